"""Authentication (SASL PLAIN and SCRAM against stored salted credentials) and
authorization (ACLs per principal and topic, group or cluster)."""

from logbroker.broker.security.acls import Acl as Acl, AclFilter as AclFilter, Authorizer as Authorizer
from logbroker.broker.security.scram import (
    SCRAM_MECHANISMS as SCRAM_MECHANISMS,
    AuthenticationError as AuthenticationError,
    ScramCredential as ScramCredential,
    new_mechanism as new_mechanism,
)
from logbroker.broker.security.users import UserStore as UserStore
