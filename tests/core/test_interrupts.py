"""Signals that land while DuckDB runs a query still end a job as an interrupt.

DuckDB stops a query when a signal handler raises during it and reports
``RuntimeError("Query interrupted")`` instead of the handler's exception (checked by hand with an
endless query; under pytest the endless query is not interrupted reliably, so these tests
deliver the signal first and then raise DuckDB's error as DuckDB does).
"""

import signal

import duckdb
import pytest

from personahub.core.interrupts import (
    Terminated,
    interrupt_of,
    interrupts_from_queries,
    sigterm_as_interrupt,
)


def _deliver(sig: int) -> None:
    try:
        signal.raise_signal(sig)
    except KeyboardInterrupt:
        pass  # what DuckDB swallows


@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGTERM, Terminated),
                                               (signal.SIGINT, KeyboardInterrupt)])
def test_duckdbs_query_interrupted_comes_out_as_the_signal(sig, expected):
    with sigterm_as_interrupt(), pytest.raises(expected) as caught:
        with interrupts_from_queries():
            _deliver(sig)
            raise RuntimeError("Query interrupted")
    assert type(caught.value) is expected


def test_a_signal_while_duckdb_reads_arrow_data_comes_out_as_the_signal():
    """Seen under load: SIGTERM during a read of a registered Arrow table came out of DuckDB as
    an InvalidInputException naming the interrupt, and the job was marked failed."""
    with sigterm_as_interrupt(), pytest.raises(Terminated):
        with interrupts_from_queries():
            _deliver(signal.SIGTERM)
            raise duckdb.InvalidInputException(
                "Invalid Input Error: Python exception occurred while reading Arrow data failed: "
                "Terminated")
    with sigterm_as_interrupt(), pytest.raises(duckdb.InvalidInputException):
        with interrupts_from_queries():  # no signal: the same text stays an error
            raise duckdb.InvalidInputException("reading Arrow data failed: Terminated")


def test_without_a_signal_duckdbs_error_stays_an_error():
    with sigterm_as_interrupt(), pytest.raises(RuntimeError, match="Query interrupted"):
        with interrupts_from_queries():
            raise RuntimeError("Query interrupted")


def test_other_errors_pass_through():
    with sigterm_as_interrupt(), pytest.raises(duckdb.CatalogException):
        with interrupts_from_queries():
            _deliver(signal.SIGTERM)
            duckdb.connect().execute("SELECT * FROM no_such_table")
    assert interrupt_of(ValueError("x")) is None
