"""`python -m simulator`: options, environment, token files, exit codes, Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.cli import build_parser, config_from_args, device_ids, main, read_token_file
from simulator.outbox import Outbox
from tests.simulator.fake_server import Chaos, FakeSensorServer, ThreadedServer
from tests.simulator.helpers import server_tokens
from tests.simulator.protocol_validator import validate_sample

REPO = Path(__file__).resolve().parents[2]


def write_tokens(path: Path, ids: list[str]) -> Path:
    path.write_text(json.dumps({device_id: f"token-{device_id}" for device_id in ids}))
    return path


def test_token_file_formats(tmp_path: Path) -> None:
    as_json = tmp_path / "tokens.json"
    as_json.write_text('{"ESP32_LL_01": "abc", "ESP32_LL_02": "def"}')
    assert read_token_file(as_json) == {"ESP32_LL_01": "abc", "ESP32_LL_02": "def"}
    as_lines = tmp_path / "tokens.env"
    as_lines.write_text("# provisioned by make run\n\nESP32_LL_01=abc\n ESP32_LL_02 = d=ef \n")
    assert read_token_file(as_lines) == {"ESP32_LL_01": "abc", "ESP32_LL_02": "d=ef"}
    broken = tmp_path / "broken.env"
    broken.write_text("ESP32_LL_01 abc\n")
    with pytest.raises(ValueError, match=r"broken\.env:1: expected DEVICE_ID=TOKEN"):
        read_token_file(broken)


def test_device_ids_are_numbered_from_one() -> None:
    assert device_ids("ESP32_LL_", 3) == ["ESP32_LL_01", "ESP32_LL_02", "ESP32_LL_03"]
    assert device_ids("ESP32_LL_", 100)[-1] == "ESP32_LL_100"
    assert device_ids("X", 100)[0] == "X001"


def test_environment_supplies_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BACKEND_WS_URL", "ws://10.0.0.5:9000/ws/sensors/")
    monkeypatch.setenv("GENERATION_INTERVAL", "0.5")
    monkeypatch.setenv("CONFIG_PATH", "foiegras_premium_entier")
    monkeypatch.setenv("DEVICE_TOKEN", "shared")
    monkeypatch.setenv("SIMULATOR_OUTBOX", str(tmp_path / "o.db"))
    config = config_from_args(build_parser().parse_args(["--devices", "2"]))
    assert config.link.url == "ws://10.0.0.5:9000/ws/sensors/"
    assert config.interval_s == 0.5
    assert config.profile.name == "foiegras_premium_entier"
    assert config.tokens == {"ESP32_LL_01": "shared", "ESP32_LL_02": "shared"}
    assert config.outbox_path == tmp_path / "o.db"
    # An explicit option wins over the environment.
    assert config_from_args(build_parser().parse_args(["--interval", "2"])).interval_s == 2.0


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--batch", "501", "--token", "t"], {}, "--batch must be 0-500"),
        (["--url", "http://127.0.0.1/", "--token", "t"], {}, "--url must start with ws://"),
        (["--devices", "2", "--token-file", "{tokens}"], {}, "no token for ESP32_LL_02"),
        (["--token", "t", "--profile", "nope"], {}, "profile 'nope' not found"),
        ([], {"GENERATION_INTERVAL": "often"}, "GENERATION_INTERVAL='often' is not a valid float"),
    ],
)
def test_bad_usage_exits_2_with_one_clear_line(
    argv: list[str],
    env: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tokens = write_tokens(tmp_path / "tokens.json", ["ESP32_LL_01"])
    argv = [arg.replace("{tokens}", str(tokens)) for arg in argv]
    assert main([*argv, "--outbox", str(tmp_path / "o.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_print_sample_and_list_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-sample", "--seed", "1"]) == 0
    frame = json.loads(capsys.readouterr().out)
    assert validate_sample(frame, "ESP32_LL_01") == []
    assert main(["--list-profiles"]) == 0
    assert "foiegras_standard_barquette" in capsys.readouterr().out.split()


def test_seed_reproduces_the_same_content_across_processes() -> None:
    def sample_content() -> dict[str, object]:
        command = [sys.executable, "-m", "simulator", "--print-sample", "--seed", "5"]
        frame = json.loads(subprocess.run(command, cwd=REPO, capture_output=True, check=True, text=True).stdout)
        return {k: v for k, v in frame.items() if k not in ("timestamp", "sample_id")}

    first, second = sample_content(), sample_content()
    assert first == second


def test_three_devices_twenty_samples_all_acked(tmp_path: Path) -> None:
    ids = device_ids("ESP32_LL_", 3)
    tokens = write_tokens(tmp_path / "tokens.json", ids)
    summary = tmp_path / "summary.json"
    with ThreadedServer(FakeSensorServer(server_tokens(ids))) as server:
        code = main(
            [
                *("--url", server.url, "--devices", "3", "--count", "20", "--interval", "0"),
                *("--token-file", str(tokens), "--outbox", str(tmp_path / "o.db")),
                *("--summary-json", str(summary), "--batch", "7"),
            ]
        )
        stored = server.stored_seqs()
    assert code == 0
    assert stored == {device_id: list(range(1, 21)) for device_id in ids}
    totals = json.loads(summary.read_text())
    assert totals["acked"] == totals["generated"] == 60
    assert totals["pending"] == 0
    assert sum(totals["grades"].values()) == 60


def test_ctrl_c_exits_cleanly_and_keeps_the_outbox(tmp_path: Path) -> None:
    outbox = tmp_path / "o.db"
    silent = FakeSensorServer(server_tokens(["ESP32_LL_01"]), Chaos(silent=True))
    with ThreadedServer(silent) as server:
        command = [
            *(sys.executable, "-m", "simulator", "--url", server.url, "--token", "token-ESP32_LL_01"),
            *("--interval", "0.05", "--outbox", str(outbox), "--status-interval", "0.2"),
        ]
        with subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True) as process:
            try:
                assert process.stderr is not None
                assert "[simulator]" in process.stderr.readline()
                time.sleep(0.2)
                process.send_signal(signal.SIGINT)
                code = process.wait(timeout=20)
                rest = process.stderr.read()
            finally:
                if process.poll() is None:
                    process.kill()
    assert code == 130
    assert "Traceback" not in rest
    with Outbox(outbox) as kept:
        assert kept.pending_count() > 0


def test_unreachable_server_exits_1_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    argv = ["--url", f"ws://127.0.0.1:{port}/ws/sensors/", "--token", "t", "--count", "2", "--interval", "0"]
    assert main([*argv, "--drain-timeout", "0.5", "--outbox", str(tmp_path / "o.db")]) == 1
    err = capsys.readouterr().err
    assert "2 sample(s) still unacked" in err
    assert "ConnectionRefusedError" in err
    with Outbox(tmp_path / "o.db") as kept:
        assert kept.pending_count() == 2
