"""Progress output: redrawn in place on a terminal, a few plain lines in a file or CI log."""
import io

from wsss.utils.logs import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_file_is_a_few_plain_lines():
    stream = io.StringIO()
    for _ in progress(range(5000), desc="work", stream=stream):
        pass
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("work: 100%") and "5000/5000" in lines[-1]


def test_progress_on_a_terminal_redraws_in_place():
    stream = Terminal()
    for _ in progress(range(50), desc="work", stream=stream):
        pass
    assert "\r" in stream.getvalue()
