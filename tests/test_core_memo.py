"""``ByIdentity``: a value made once per live object, never handed to an equal one."""

from __future__ import annotations

from trestle.core.conversation import ToolSchema, canonical_json, tool_json
from trestle.core.memo import ByIdentity


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


def test_it_keeps_at_most_its_size_and_each_entry_keeps_its_object_alive() -> None:
    memo: ByIdentity[object, int] = ByIdentity(id, size=3)
    for _ in range(10):
        obj = object()
        assert memo(obj) == id(obj)  # a freed id reused by a new object is not a hit
    assert len(memo._found) <= 3


def test_a_tool_schemas_json_is_its_canonical_dump() -> None:
    tool = ToolSchema(name="read_file", description="d", parameters={"b": 1, "a": [2]})
    assert tool_json(tool) == canonical_json(tool.model_dump(mode="json"))
    assert tool_json(tool) is tool_json(tool)
