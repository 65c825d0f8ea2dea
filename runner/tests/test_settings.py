"""Settings resolve through Dask config: packaged YAML defaults, DASK_WORKSPACE__... env, flags."""

from __future__ import annotations

import json
import subprocess
import sys

import dask.config
import pytest

from dask_workspace.config import DEFAULTS_FILE, load_settings
from dask_workspace.errors import UsageError


def test_packaged_defaults_are_registered():
    s = load_settings()
    assert s.mode == "window"
    assert s.window is None  # auto
    assert s.flush_seconds == 60.0
    assert s.flush_bytes == 256 * 2**20
    assert s.replicate_memory == 32 * 2**20
    assert DEFAULTS_FILE.name == "workspace.yaml"


def test_dask_config_and_flags_override_in_that_order():
    with dask.config.set({"workspace.runner.window": 7, "workspace.runner.batch-size": 5}):
        s = load_settings()
        assert (s.window, s.batch_size) == (7, 5)
        s = load_settings(overrides={"window": ("--window", "auto"), "batch_size": ("--b", "9")})
        assert (s.window, s.batch_size) == (None, 9)


def test_environment_variables_reach_the_settings():
    code = (
        "import json; from dask_workspace.config import load_settings; s = load_settings(); "
        "print(json.dumps([s.mode, s.window, s.batch_size, s.memory_fraction, s.stall_timeout]))"
    )
    env = {
        "DASK_WORKSPACE__RUNNER__MODE": "batch",
        "DASK_WORKSPACE__RUNNER__WINDOW": "12",
        "DASK_WORKSPACE__RUNNER__BATCH_SIZE": "3",
        "DASK_WORKSPACE__RUNNER__AUTO_WINDOW__MEMORY_FRACTION": "0.25",
        "DASK_WORKSPACE__RUNNER__STALL_TIMEOUT": "2 minutes",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == ["batch", 12, 3, 0.25, 120.0]


def test_bad_settings_are_all_reported_with_their_source():
    with (
        dask.config.set({"workspace.runner.flush-seconds": "soon"}),
        pytest.raises(UsageError) as info,
    ):
        load_settings(overrides={"window": ("--window", "0"), "mode": ("--mode", "fast")})
    text = info.value.format()
    assert "--window: must be 'auto' or a positive integer, got '0'" in text
    assert "--mode: must be 'window' or 'batch', got 'fast'" in text
    assert "workspace.runner.flush-seconds: must be a duration" in text
