"""Ids read off the starts of valid request lines: never another than parsing the line gives."""

from __future__ import annotations

import pytest

from batchrun.idscan import canonical_ids
from batchrun.reader import request_id

# Valid request lines whose ids are read off their starts: as orjson, json.dumps and others write them.
READ_OFF = [
    b'{"custom_id":"a","body":{"model":"m"}}',
    b'{"custom_id": "a", "body": {"model": "m"}}',                           # json.dumps
    b'{ "custom_id" :\t"a" , "body":{"model":"m"}}',                         # whitespace anywhere JSON allows
    b'\t{"custom_id":"a","body":{"model":"m"}}\r',                           # around the line, a CR (of a CRLF)
    b'{"custom_id":"\xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82","body":{"model":"m"}}',  # UTF-8
    b'{"custom_id":"a","body":{"messages":[{"content":"\\u003c\\u00e9\\n\\"\\\\"}]}}',  # escapes after the id
    b'{"custom_id":"a","body":{"messages":[{"content":"\\"custom_id\\": \\"b\\""}]}}',  # the key quoted in text
]

# Lines whose ids are not read off (or read as parsing gives them): the key twice, spelled
# plainly or with an escape of any of its letters, escapes in the id, not first, not a string.
PARSED = [
    b'{"custom_id":"a","body":{"model":"m"},"custom_id":"b"}',               # a later key wins: b
    b'{"custom_id":"a","body":{"model":"m"}, "custom_id" : "b"}',
    *(b'{"custom_id":"a","body":{"model":"m"},"' + b"custom_id".replace(bytes([letter]), escape) + b'":"c"}'
      for letter in b"custom_id" for escape in (b"\\u%04x" % letter, b"\\u%04X" % letter)),
    b'{"custom_id":"a","body":{"model":"m","metadata":{"custom_id":"d"}}}',  # a nested key
    b'{"custom_id":"a\\u0062","body":{"model":"m"}}',                        # escapes in the id: ab
    b'{"custom_id":"a\\"b","body":{"model":"m"}}',
    b'{"custom_id":"a\\\\","body":{"model":"m"}}',
    b'{"custom_id":"\\u00e9t\\u00e9","body":{"model":"m"}}',
    b'{"custom_id":"\\/","body":{"model":"m"}}',
    b'{"body":{"model":"m"},"custom_id":"k"}',                               # not the first key
    b'{"custom_id":5,"body":{"model":"m"}}',                                             # not a string: line-N
    b'{"custom_id":null,"body":{"model":"m"}}',
    b'{"custom_id":["h"],"body":{"model":"m"}}',
    b'{"custom_id":"","body":{"model":"m"}}',                                # empty: line-N
    b'{"model":"m","messages":[{"custom_id":"f"}]}',                         # a bare body: line-N
    b'\xef\xbb\xbf{"custom_id":"a","body":{"model":"m"}}',                   # a BOM, not at the file's start
    b"",                                                                     # a blank line
]


def _block(*lines: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines)


@pytest.mark.parametrize("line", READ_OFF + PARSED)
def test_an_id_read_off_a_line_is_the_one_parsing_gives(line: bytes) -> None:
    block = _block(b'{"custom_id":"x","body":{}}', line, b'{"custom_id":"y","body":{}}')
    read = canonical_ids(block, len(block))
    assert (read is not None) == (line in READ_OFF)
    if read is not None:
        assert [custom_id.decode() for custom_id in read] == ["x", request_id(line.strip(), 2), "y"]


def test_only_the_lines_before_the_end_given_are_read() -> None:
    """A block read from a file ends inside a line, or after one that is not like the others."""
    block = _block(READ_OFF[0], READ_OFF[1]) + READ_OFF[2][:20]
    assert canonical_ids(block, block.rfind(b"\n") + 1) == [b"a", b"a"]
    assert canonical_ids(block, len(READ_OFF[0]) + 1) == [b"a"]
    block = _block(READ_OFF[0], PARSED[0])
    assert canonical_ids(block, len(READ_OFF[0]) + 1) == [b"a"] and canonical_ids(block, len(block)) is None
    assert canonical_ids(block, 0) is None
