"""``ByIdentity``: a value made once per live object, never handed to an equal one."""

from __future__ import annotations

import itertools

from trestle.core.conversation import ToolSchema, canonical_json, tool_json
from trestle.core.memo import ByIdentity, same_start


def test_a_value_is_made_once_per_object_and_anew_for_an_equal_one() -> None:
    made: list[object] = []

    def size(obj: list[int]) -> int:
        made.append(obj)
        return len(obj)

    memo = ByIdentity(size)
    first, equal = [1, 2], [1, 2]
    assert memo(first) == memo(first) == 2
    assert memo(equal) == 2
    assert made == [first, equal] and made[1] is equal


def test_each_new_object_gets_its_own_value_and_at_most_size_are_kept() -> None:
    made = itertools.count()
    memo: ByIdentity[object, int] = ByIdentity(lambda _: next(made), size=3)
    kept = object()
    assert memo(kept) == 0
    # objects freed at once: their ids come round again, and must not find a value
    assert [memo(object()) for _ in range(10)] == list(range(1, 11))
    assert len(memo._found) <= 3


def test_a_tool_schemas_json_is_its_canonical_dump() -> None:
    tool = ToolSchema(name="read_file", description="d", parameters={"b": 1, "a": [2]})
    assert tool_json(tool) == canonical_json(tool.model_dump(mode="json"))
    assert tool_json(tool) is tool_json(tool)


def test_same_start_counts_the_very_objects_each_list_begins_with() -> None:
    a, b, c = [1], [2], [3]
    assert same_start([a, b, c], [a, b, c, [4]]) == 3
    assert same_start([a, b, c], [a, b]) == 2
    assert same_start([a, b], [a, [2], b]) == 1  # an equal object is not the same one
    assert same_start([], [a]) == same_start([a], []) == 0
