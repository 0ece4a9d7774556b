"""One way to read what a task group raised: the user's error inside, or one line for a bug."""

from __future__ import annotations

from a3s_dev.errors import A3sError, RuntimeFailure, first_user_error, leaves, one_line


def test_leaves_look_through_nested_groups_depth_first() -> None:
    a, b, c = ValueError("a"), KeyError("b"), OSError("c")
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [a, b]), c])
    assert list(leaves(group)) == [a, b, c]
    assert list(leaves(a)) == [a]


def test_the_users_error_is_found_inside_a_task_groups_errors() -> None:
    wanted = RuntimeFailure("proxy: port 7080 is already in use")
    group = BaseExceptionGroup("x", [ExceptionGroup("y", [ValueError("noise"), wanted])])
    assert first_user_error(group) is wanted
    assert first_user_error(ValueError("bug")) is None


def test_one_line_names_the_innermost_error() -> None:
    assert one_line(ExceptionGroup("g", [ValueError("bad value")])) == "ValueError: bad value"
    assert one_line(RuntimeFailure("port 80 is already in use")) == "port 80 is already in use"
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_every_line_of_a_message_is_prefixed_when_printed() -> None:
    assert A3sError("A3sfile.hcl:3: error: x\nA3sfile.hcl:5: error: y").printed() == (
        "a3s: A3sfile.hcl:3: error: x\na3s: A3sfile.hcl:5: error: y"
    )

def test_one_line_may_leave_the_type_out() -> None:
    assert one_line(RuntimeError("inotify said no"), typed=False) == "inotify said no"
