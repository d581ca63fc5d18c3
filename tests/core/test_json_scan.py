"""core.json_scan: the one bracket count behind the JSON depth limit and the importer's
"the file looks cut off" message."""
from core.json_scan import json_nesting


def test_brackets_inside_strings_and_escaped_quotes_do_not_count():
    nesting = json_nesting(r'{"a": "[[{{ \" ]]", "b": [1, {"c": 2}]}')
    assert (nesting.deepest, nesting.open, nesting.in_string) == (3, 0, False)


def test_a_cut_off_text_ends_open_or_inside_a_string():
    assert json_nesting('[{"role": "user", "content": "hel').in_string
    assert json_nesting('[{"role": "user"}, {"role": ').open == 2


def test_the_scan_stops_past_the_limit():
    text = "[" * 10_000 + "]" * 10_000
    assert json_nesting(text, limit=32).deepest == 33
    assert json_nesting(text).deepest == 10_000
