"""An archetype's one call is given its members' history (group_memory): what every member saw
reads as plain events and memory, what only some did says their share, and the memory keeps the
most widely held items, no more than a member's prompt shows."""

from personahub.sim.group_memory import group_history
from personahub.sim.memory import AgentMemory


def _memory(*observed: tuple[int, str]) -> AgentMemory:
    memory = AgentMemory(observations=6, messages=4, own=3, summary_terms=4)
    for step, text in observed:
        memory.observe(step, text)
    return memory


def test_what_all_members_saw_is_plain_and_what_some_saw_carries_its_share():
    members = [_memory((1, "The bridge closed."), (2, "Prices rose.")),
               _memory((1, "The bridge closed."), (2, "Prices rose.")),
               _memory((2, "Prices rose."), (3, "Not yet seen: this step."))]
    history = group_history(members, [["A storm."], ["A storm.", "A rumour."], ["A storm."]],
                            before_step=3, limit=6)
    assert history.events == ["A storm."]  # this step's, seen by every member
    assert history.memory == ["(step 1) The bridge closed. [67% of people like you]",
                              "(step 2) Prices rose.",
                              "(step 3) A rumour. [33% of people like you]"]


def test_the_most_widely_held_items_are_kept_up_to_the_limit_oldest_first():
    members = [_memory((1, "Old and shared."), (2, "Mine alone."), (3, "Newer, shared.")),
               _memory((1, "Old and shared."), (3, "Newer, shared.")), None]
    history = group_history(members, [[], [], []], before_step=4, limit=2)
    # a member with no memory yet counts as remembering nothing
    assert history.memory == ["(step 1) Old and shared. [67% of people like you]",
                              "(step 3) Newer, shared. [67% of people like you]"]
    assert group_history(members, [[], [], []], before_step=4, limit=0).memory == []
    assert group_history([], [], before_step=1, limit=6).memory == []


def test_the_members_keyword_summaries_fold_into_one():
    small = AgentMemory(observations=1, messages=1, own=1, summary_terms=3)
    for step, text in enumerate(["flood levees river", "flood council vote", "river ferry"], 1):
        small.observe(step, text)  # each eviction folds its keywords into the summary
    other = AgentMemory(observations=1, messages=1, own=1, summary_terms=3)
    other.observe(1, "flood warning sirens")
    other.observe(2, "ferry timetable")
    history = group_history([small, other], [[], []], before_step=5, limit=2)
    assert history.memory[0].startswith("Earlier, things about: flood")
    assert len(history.memory[0].split(": ", 1)[1].split(", ")) == 3
