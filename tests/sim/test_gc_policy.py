"""The run's garbage-collector policy leaves the interpreter as it found it."""

from __future__ import annotations

import gc

import pytest

from personahub.api import run_simulation
from personahub.pipelines.run import RunConfig
from personahub.sim.gc_policy import FULL_PASS_EVERY, RunHeap
from personahub.sim.scenario import load_scenario


def test_paused_during_setup_frozen_after_settle_and_restored_on_exit():
    before = gc.get_threshold()
    assert gc.isenabled()
    with RunHeap() as heap:
        assert not gc.isenabled()  # setup: no collections
        heap.settle()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        assert gc.get_threshold()[2] == max(before[2], FULL_PASS_EVERY)
        heap.settle()  # after a step: still fine to call again
    assert gc.isenabled() and gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_restored_when_the_run_fails_and_when_gc_was_off():
    with pytest.raises(RuntimeError), RunHeap() as heap:
        heap.settle()
        raise RuntimeError("step failed")
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        with RunHeap() as heap:
            heap.settle()
            assert not gc.isenabled()  # a caller who turned it off keeps it off
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_a_run_leaves_nothing_frozen(scenario_file, tmp_path):
    before = gc.get_threshold()
    run_simulation(RunConfig(scenario=load_scenario(scenario_file(12, steps=2)), db=tmp_path / "h.duckdb"))
    assert gc.isenabled() and gc.get_freeze_count() == 0 and gc.get_threshold() == before
