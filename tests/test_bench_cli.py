import json

from click.testing import CliRunner

from logbroker.cli import main


def test_bench_runs_against_its_own_broker():
    result = CliRunner().invoke(main, ["bench", "-n", "3000", "--seconds", "0.5", "--rate", "1000", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["produce_records_per_s"] > 0 and figures["consume_records_per_s"] > 0
    assert 0 < figures["latency_ms"]["p50"] <= figures["latency_ms"]["p99"] < 5000
    assert figures["broker"].startswith("embedded")
