"""The schema registry of ``logbroker serve --schema-registry-port``: how fast
it registers, answers lookups and checks compatibility, and how long a
restart takes to replay ``_schemas``.

* ``register_per_s``: distinct Avro schemas registered one after the other
  (each answer waits for its fsync), over ``--schemas`` (2,000) registrations
  spread over 100 subjects;
* ``get_by_id_per_s``: ``GET /schemas/ids/{id}`` (what a deserializer asks on
  a cache miss), one client, keep-alive;
* ``check_ms``: ``POST /compatibility/subjects/S/versions`` of a subject
  with 20 versions at FULL_TRANSITIVE (every version checked both ways);
* ``restart_s``: a broker restart with those schemas, from start to the
  registry answering;
* ``avro_records_per_s``: confluent-kafka's ``AvroSerializer`` and
  ``AvroDeserializer`` through this registry around a produce and consume of
  ``--records`` records, against the same records without serialization
  (``avro_ratio``: how much of the plain rate is left).

Prints one JSON object on stdout; progress goes to stderr.

    python benchmarks/bench_registry.py [--schemas N] [--records N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import LogbrokerProcess  # noqa: E402

_REGISTRY = re.compile(r"schema registry on http://\S+:(\d+)/")
CT = "application/vnd.schemaregistry.v1+json"


def _schema(i: int, fields: int = 3) -> str:
    return json.dumps({"type": "record", "name": f"R{i}", "namespace": "bench",
                       "fields": [{"name": f"f{j}", "type": "long", "default": 0} for j in range(fields)]})


class _Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: object | None = None) -> object:
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers={"Content-Type": CT} if data else {})
        response = self.conn.getresponse()
        raw = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {raw[:200]!r}")
        return json.loads(raw)


def _wait_port(broker: LogbrokerProcess) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = _REGISTRY.search(broker.log())
        if found:
            return int(found.group(1))
        time.sleep(0.02)
    raise RuntimeError("the registry did not start:\n" + broker.log()[-2000:])


def _avro_round_trip(bootstrap: str, url: str, records: int) -> tuple[float, float]:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    schema = json.dumps({"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "long"}, {"name": "item", "type": "string"}, {"name": "price", "type": "double"}]})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("plain", 1, 1), NewTopic("avro", 1, 1)]).values():
        f.result()
    registry = SchemaRegistryClient({"url": url})
    rates = []
    for topic in ("plain", "avro"):
        ctx = SerializationContext(topic, MessageField.VALUE)
        serialize = AvroSerializer(registry, schema) if topic == "avro" else None
        deserialize = AvroDeserializer(registry) if topic == "avro" else None
        started = time.perf_counter()
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        for i in range(records):
            value = {"id": i, "item": "lamp", "price": 9.5}
            producer.produce(topic, serialize(value, ctx) if serialize else json.dumps(value).encode())
            if i % 10000 == 0:
                producer.poll(0)
        producer.flush(60)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        seen = 0
        while seen < records:
            for msg in consumer.consume(10000, 1.0):
                if msg.error() is None:
                    if deserialize:
                        deserialize(msg.value(), ctx)
                    else:
                        json.loads(msg.value())
                    seen += 1
        consumer.close()
        rates.append(records / (time.perf_counter() - started))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemas", type=int, default=2000)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-registry-")
    config = os.path.join(workdir, "registry.toml")
    with open(config, "w") as f:
        f.write("schema_registry_port = 0\n")
    result: dict[str, object] = {"schemas": args.schemas, "records": args.records}
    with LogbrokerProcess(os.path.join(workdir, "broker"), "--config", config) as broker:
        client = _Client(_wait_port(broker))
        client.call("PUT", "/config", {"compatibility": "NONE"})
        print(f"registering {args.schemas} schemas", file=sys.stderr)
        started = time.perf_counter()
        for i in range(args.schemas):
            client.call("POST", f"/subjects/s{i % 100}-value/versions", {"schema": _schema(i)})
        result["register_per_s"] = round(args.schemas / (time.perf_counter() - started), 1)

        started = time.perf_counter()
        for i in range(args.schemas):
            client.call("GET", f"/schemas/ids/{i % args.schemas + 1}")
        result["get_by_id_per_s"] = round(args.schemas / (time.perf_counter() - started), 1)

        client.call("PUT", "/config/evolving-value", {"compatibility": "FULL_TRANSITIVE"})
        for v in range(20):
            client.call("POST", "/subjects/evolving-value/versions", {"schema": _schema(10**6, fields=v + 1)})
        started = time.perf_counter()
        for _ in range(20):
            client.call("POST", "/compatibility/subjects/evolving-value/versions",
                        {"schema": _schema(10**6, fields=22)})
        result["check_ms"] = round((time.perf_counter() - started) / 20 * 1000, 2)

        plain, avro = _avro_round_trip(broker.bootstrap, f"http://127.0.0.1:{_wait_port(broker)}", args.records)
        result["plain_json_records_per_s"] = round(plain)
        result["avro_records_per_s"] = round(avro)
        result["avro_ratio"] = round(avro / plain, 3)

        broker.stop()
        os.remove(broker.log_path)  # the harness reads the port from the first line of the log
        started = time.perf_counter()
        broker.start()
        client = _Client(_wait_port(broker))
        assert client.call("GET", "/schemas/ids/1")
        result["restart_s"] = round(time.perf_counter() - started, 3)
        result["subjects_after_restart"] = len(client.call("GET", "/subjects"))  # type: ignore[arg-type]
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
