"""Kafka record batch v2: header parse/validate/stamp, batch builder and decoder."""

from logbroker.records.header import (
    ATTRIBUTES_AT as ATTRIBUTES_AT,
    ATTRIBUTES_STRUCT as ATTRIBUTES_STRUCT,
    BASE_OFFSET_AT as BASE_OFFSET_AT,
    BASE_SEQUENCE_AT as BASE_SEQUENCE_AT,
    BASE_TIMESTAMP_AT as BASE_TIMESTAMP_AT,
    BATCH_LENGTH_AT as BATCH_LENGTH_AT,
    CRC_AT as CRC_AT,
    CRC_START as CRC_START,
    CRC_STRUCT as CRC_STRUCT,
    HEADER_STRUCT as HEADER_STRUCT,
    LAST_OFFSET_DELTA_AT as LAST_OFFSET_DELTA_AT,
    LOCATE_STRUCT as LOCATE_STRUCT,
    MAGIC_AT as MAGIC_AT,
    MAX_TIMESTAMP_AT as MAX_TIMESTAMP_AT,
    PARTITION_LEADER_EPOCH_AT as PARTITION_LEADER_EPOCH_AT,
    PREFIX_SIZE as PREFIX_SIZE,
    PREFIX_STRUCT as PREFIX_STRUCT,
    PRODUCER_EPOCH_AT as PRODUCER_EPOCH_AT,
    PRODUCER_ID_AT as PRODUCER_ID_AT,
    RECORDS_AT as RECORDS_AT,
    RECORDS_COUNT_AT as RECORDS_COUNT_AT,
    TIMESTAMP_STRUCT as TIMESTAMP_STRUCT,
    ATTR_COMPRESSION_MASK as ATTR_COMPRESSION_MASK,
    ATTR_CONTROL as ATTR_CONTROL,
    ATTR_LOG_APPEND_TIME as ATTR_LOG_APPEND_TIME,
    ATTR_TRANSACTIONAL as ATTR_TRANSACTIONAL,
    HEADER_SIZE as HEADER_SIZE,
    LOG_OVERHEAD as LOG_OVERHEAD,
    MAGIC as MAGIC,
    NO_PRODUCER_ID as NO_PRODUCER_ID,
    BatchHeader as BatchHeader,
    BytesLike as BytesLike,
    batch_crc as batch_crc,
    check_batch as check_batch,
    iter_batches as iter_batches,
    parse_header as parse_header,
    peek_size as peek_size,
    scan_valid_prefix as scan_valid_prefix,
    stamp_batch as stamp_batch,
    validate_produced_batch as validate_produced_batch,
)
from logbroker.records.builder import (
    BatchBuilder as BatchBuilder,
    build_batch as build_batch,
)
from logbroker.records.compression import (
    Compression as Compression,
    compress as compress,
    decompress as decompress,
)
from logbroker.records.legacy import (
    down_convert as down_convert,
    message_set_to_batch as message_set_to_batch,
)
from logbroker.records.decoder import (
    DecodedBatch as DecodedBatch,
    Record as Record,
    decode_batch as decode_batch,
    decode_batches as decode_batches,
)
from logbroker.records.keys import keyless_records as keyless_records
