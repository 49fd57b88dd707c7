
import pytest

from personahub.core.errors import PersonahubError
from personahub.core.store import connect
from personahub.models.client import LLMClient, LLMSettings
from personahub.personas.expand import find_unfinished, list_expansions
from personahub.personas.link_nearest import DEFAULT_LINK_EMBEDDER
from personahub.personas.linking import DEFAULT_LINK_CANDIDATES
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from tests.conftest import persona_texts
from tests.expansions import expand_hub
from tests.fakes import FakeClient, crash_after, same_person_links
from tests.pipeline_helpers import personas_snapshot, relations_snapshot


def seeded_hub(path, n=5):
    con = connect(path)
    upsert_personas(con, [Persona(text=t, source="test") for t in persona_texts(n)])
    return con, [r[0] for r in con.execute("select persona_id from personas order by seq").fetchall()]


def run(con, caller, start, **kwargs):
    options = {"hops": 3, "fanout": 2, "batch_size": 4} | kwargs
    return expand_hub(con, caller, start_ids=start, **options)


def client(spec="offline"):
    return LLMClient(LLMSettings(spec=spec, seed=3, max_retries=1, backoff_s=0.01))


@pytest.mark.parametrize("fail_after", [3, 9, 25])
@pytest.mark.slow
def test_interrupted_expansion_resumes_to_the_same_hub(tmp_path, fail_after):
    whole, start = seeded_hub(tmp_path / "whole.duckdb")
    full = run(whole, client(), start)

    con, start2 = seeded_hub(tmp_path / "cut.duckdb")
    assert start2 == start
    with pytest.raises(PersonahubError, match="simulated crash"):
        run(con, FakeClient(crash_after(fail_after), inner=client()), start)
    unfinished = find_unfinished(con, hops=3, fanout=2)
    assert unfinished is not None and unfinished.status == "failed"
    done_rows = con.execute("select count(*) from expansion_frontier where status = 'done'").fetchall()[0][0]
    assert done_rows <= fail_after and (done_rows > 0) == (fail_after >= 4)  # whole batches only
    resumed = run(con, client(), [], resume=unfinished.expansion_id)

    assert personas_snapshot(con) == personas_snapshot(whole)
    assert relations_snapshot(con) == relations_snapshot(whole)
    assert resumed.reached_ids == full.reached_ids and resumed.new_ids == full.new_ids
    assert (resumed.asked, resumed.edges, resumed.hops) == (full.asked, full.edges, full.hops)
    assert resumed.resumed and find_unfinished(con, hops=3, fanout=2) is None
    asked = con.execute("select count(*) from llm_calls where purpose = 'expand'").fetchall()[0][0]
    assert asked == full.asked  # calls of the lost batch were never written


@pytest.mark.slow  # end to end; the module is covered by the fast tests here
def test_resume_over_the_loopback_server(tmp_path, server):
    srv = server(seed=2)
    spec = f"{srv.base_url}?model=offline"
    whole, start = seeded_hub(tmp_path / "whole.duckdb", n=3)
    run(whole, client(spec), start, hops=2)
    con, _ = seeded_hub(tmp_path / "cut.duckdb", n=3)
    with pytest.raises(PersonahubError, match="simulated crash"):
        run(con, FakeClient(crash_after(5), inner=client(spec)), start, hops=2)
    info = find_unfinished(con, hops=2)
    assert info is not None and info.pending > 0
    run(con, client(spec), start, hops=2, resume=info.expansion_id)
    assert personas_snapshot(con) == personas_snapshot(whole)
    assert relations_snapshot(con) == relations_snapshot(whole)


@pytest.mark.slow
def test_resume_checks_settings_and_default_behaviour_is_unchanged(tmp_path):
    con, start = seeded_hub(tmp_path / "hub.duckdb", n=3)
    with pytest.raises(PersonahubError, match="simulated crash"):
        run(con, FakeClient(crash_after(2), inner=client()), start)
    info = find_unfinished(con)
    with pytest.raises(PersonahubError, match="the job's fanout is 2, not 3"):
        run(con, client(), start, fanout=3, resume=info.expansion_id)
    with pytest.raises(PersonahubError, match="no such expansion"):
        run(con, client(), start, resume="exp-nope")
    # Without resume a new expansion starts (the runner's behaviour): re-running reaches the same people.
    first = run(con, client(), start)
    again = run(con, client(), start)
    assert again.new_personas == 0 and set(again.reached_ids) == set(first.reached_ids)
    assert [e.status for e in list_expansions(con)].count("finished") == 2
    assert run(con, client(), start, hops=0).asked == 0


@pytest.mark.slow  # end to end; the module is covered by the fast tests here
def test_cli_expand_resumes_automatically(tmp_path):
    from typer.testing import CliRunner

    from personahub.cli.app import app

    runner = CliRunner()
    whole, _ = seeded_hub(tmp_path / "whole.duckdb", n=4)
    whole.close()
    args = ["personas", "expand", "--hops", "2", "--fanout", "2", "--batch-size", "3"]
    result = runner.invoke(app, args + ["--db", str(tmp_path / "whole.duckdb")])
    assert result.exit_code == 0 and "resuming" not in result.output  # (the tmp path says "resumes")
    assert "expansion exp-" in result.output and " started in " in result.output

    con, start = seeded_hub(tmp_path / "cut.duckdb", n=4)
    offline0 = LLMClient(LLMSettings(seed=0))
    with pytest.raises(PersonahubError, match="simulated crash"):
        crashing = FakeClient(crash_after(7), inner=offline0)
        # started as the CLI starts it: with the CLI's default triangle closing
        expand_hub(con, crashing, hops=2, fanout=2, batch_size=3, limit=None, origin="cli",
                   link_candidates=DEFAULT_LINK_CANDIDATES, link_embedder=DEFAULT_LINK_EMBEDDER)
    con.close()
    result = runner.invoke(app, args + ["--db", str(tmp_path / "cut.duckdb")])
    assert result.exit_code == 0, result.output
    assert "resuming expansion" in result.output and "(resumed)" in result.output
    cut, whole = connect(tmp_path / "cut.duckdb"), connect(tmp_path / "whole.duckdb")
    assert personas_snapshot(cut) == personas_snapshot(whole)
    assert relations_snapshot(cut) == relations_snapshot(whole)
    cut.close()
    fresh = runner.invoke(app, args + ["--db", str(tmp_path / "cut.duckdb"), "--fresh"])
    assert fresh.exit_code == 0 and "resuming" not in fresh.output


@pytest.mark.parametrize("fail_after", [5, 21])
@pytest.mark.slow
def test_a_linking_expansion_with_merges_resumes_to_the_same_hub(tmp_path, fail_after):
    """Embedding candidates and same-person merges depend on what earlier batches committed:
    the pool and the merge aliases are rebuilt from the database on resume."""
    options = {"link_candidates": 3, "link_embedder": "hash"}
    same_person = same_person_links()
    whole, start = seeded_hub(tmp_path / "whole.duckdb")
    run(whole, FakeClient(same_person, inner=client()), start, **options)
    con, _ = seeded_hub(tmp_path / "cut.duckdb")
    crash, same_person = crash_after(fail_after), same_person_links()

    def crash_or_merge(call):
        return crash(call) or same_person(call)

    with pytest.raises(PersonahubError, match="simulated crash"):
        run(con, FakeClient(crash_or_merge, inner=client()), start, **options)
    unfinished = find_unfinished(con, hops=3, fanout=2)
    assert unfinished is not None
    run(con, FakeClient(same_person, inner=client()), [], resume=unfinished.expansion_id,
        **options)
    assert personas_snapshot(con) == personas_snapshot(whole)
    assert relations_snapshot(con) == relations_snapshot(whole)
    merges = "select persona_id, merged_into, method from persona_merges order by position"
    assert con.execute(merges).fetchall() == whole.execute(merges).fetchall()
    assert whole.execute(merges).fetchall()
    with pytest.raises(PersonahubError, match="the job's link_embedder is hash, not lexical"):
        run(con, client(), [], resume=unfinished.expansion_id, link_candidates=3,
            link_embedder="lexical")
