"""The sandbox's report on stdout: "<status> <length>" and that many bytes, taken before the container ends."""

from __future__ import annotations

from evaluator.sandbox.spec import Limits
from evaluator.sandbox.streams import END_OF_LOG, Streams, split_status


def streams(output_bytes: int = 1024) -> Streams:
    return Streams(sock=None, limits=Limits(output_bytes=output_bytes))


def test_a_length_prefixed_report_is_complete_with_its_last_byte_and_the_logs_end():
    reader = streams()
    reader._take(b"0 6\nPAR")
    assert not reader.reported and not reader.finished.is_set()

    reader._take(b"1!!0\n")  # the last bytes, then the entrypoint's own "<status>\n"
    assert not reader.reported  # the log is another pipe: its last lines may still be on the way
    reader._look_for_log_end(b"tail of the log\n[evaluator] end ")
    reader._look_for_log_end(b"of log\n")  # the mark split across two frames

    assert reader.reported and reader.finished.is_set()
    assert split_status(reader.stdout) == (0, b"PAR1!!")


def test_the_logs_end_alone_is_no_result():
    reader = streams()
    reader._look_for_log_end(END_OF_LOG)
    reader._take(b"0 6\nPA")

    assert not reader.reported and not reader.finished.is_set()


def test_the_older_report_is_read_to_the_end_of_the_stream():
    reader = streams()
    reader._take(b"0\nPAR1")

    assert not reader.reported and not reader.finished.is_set()
    assert split_status(reader.stdout) == (0, b"PAR1")


def test_a_report_declaring_more_than_the_output_cap_is_an_overflow():
    reader = streams(output_bytes=10)
    reader._take(b"0 11\n")

    assert reader.overflow and reader.finished.is_set() and not reader.reported


def test_status_lines_that_are_not_numbers_have_no_status():
    assert split_status(b"ok 3\nabc") == (None, None)
    assert split_status(b"no newline") == (None, None)
    assert split_status(b"2 0\n") == (2, None)
