"""Reading job and machine ads strictly, writing the update ad safely."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time

import classad2
import pytest

from lark_async.decide import ads
from lark_async.errors import AdError

OLD_JOB_AD = """\
MyType = "Job"
ClusterId = 123
ProcId = 0
Cmd = "/bin/sleep"
Args = "a \\"b\\" c"
Owner = "r\u00e9my"
RequestCpus = 1
Requirements = (TARGET.Arch == "X86_64") && (TARGET.Memory >= 2048)
WantIO = true
Rate = 1.5e3
List = { "a",2 }
Nested = [ X = 1; Y = "z" ]
"""

NEW_MACHINE_AD = (
    '[ MyType = "Machine"; Name = "slot1_2@node.example"; '
    'LarkNetworkType = ifThenElse(TARGET.X =?= true, "none", "nat"); Memory = 2048; '
    'Owner = "r\u00e9my"; List = { 1, 2 } ]'
)


def items(ad: classad2.ClassAd) -> dict[str, object]:
    return {key: ad.eval(key) for key in ad}


# -- parse_ad: valid input -----------------------------------------------------------------


def test_old_syntax_ad_is_parsed():
    ad = ads.parse_ad(OLD_JOB_AD, "job ad")
    assert ad.eval("ClusterId") == 123
    assert ad.eval("ProcId") == 0
    assert ad.eval("Cmd") == "/bin/sleep"
    assert ad.eval("Args") == 'a "b" c'
    assert ad.eval("Owner") == "r\u00e9my"
    assert ad.eval("WantIO") is True
    assert ad.eval("Rate") == 1500.0
    assert ad.eval("List") == ["a", 2]
    assert ad.eval("Nested").eval("Y") == "z"
    assert str(ad.lookup("Requirements")) == (
        '(TARGET.Arch == "X86_64") && (TARGET.Memory >= 2048)'
    )
    assert len(ad) == 12


def test_new_syntax_ad_is_parsed():
    ad = ads.parse_ad(NEW_MACHINE_AD, "machine ad")
    assert ad.eval("Name") == "slot1_2@node.example"
    assert ad.eval("Memory") == 2048
    assert ad.eval("Owner") == "r\u00e9my"
    assert ad.eval("List") == [1, 2]
    assert ads.evaluate(ad, "LarkNetworkType", classad2.parseOne("[X = true]")) == "none"


def test_new_syntax_may_have_surrounding_whitespace():
    assert ads.parse_ad("\n\n  [ A = 1 ]  \n", "x").eval("A") == 1


def test_comments_blank_lines_and_separators_are_skipped():
    text = "# a comment\n\n   \nA = 1\n*** end of ad\n------\n  # indented comment\nB = 2\n"
    assert items(ads.parse_ad(text, "x")) == {"A": 1, "B": 2}


def test_windows_line_endings_are_accepted():
    assert items(ads.parse_ad("A = 1\r\nB = 2\r\n", "x")) == {"A": 1, "B": 2}


@pytest.mark.parametrize("text", ["", "\n", "   \n\n", "# only a comment\n"])
def test_empty_text_is_an_empty_ad(text):
    assert len(ads.parse_ad(text, "x")) == 0


def test_later_line_wins_for_a_repeated_attribute():
    assert items(ads.parse_ad("A = 1\nA = 2\n", "x")) == {"A": 2}


# -- parse_ad: malformed input names the line ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "A = 1\n\n# c\nB = 2\ngarbage\n",
            "job ad line 5: expected 'Attribute = value', got 'garbage'",
        ),
        ("A = 1\nB = (\n", "job ad line 2: cannot parse the value of B"),
        ("A = \n", "job ad line 1: cannot parse the value of A"),
        ("1A = 2\n", "job ad line 1: expected 'Attribute = value', got '1A = 2'"),
        ("A B = 1\n", "job ad line 1: expected 'Attribute = value', got 'A B = 1'"),
        ("= 1\n", "job ad line 1: expected 'Attribute = value', got '= 1'"),
        ("A == 1\n", "job ad line 1: cannot parse the value of A"),
        ('A = "unterminated\n', "job ad line 1: cannot parse the value of A"),
        ("A = 1\nB = (\nC = 3\n", "job ad line 2: cannot parse the value of B"),
        ("A = (\nB = 2\n", "job ad line 1: cannot parse the value of A"),
        ("A = 1\n***\n\n# c\nB = {\n", "job ad line 5: cannot parse the value of B"),
        ("A = 1\nB = \x00\n", "job ad line 2: cannot parse the value of B"),
        ("x" * 100 + "\n", "job ad line 1: expected 'Attribute = value', got '" + "x" * 60 + "'"),
        # classad2 alone would take the "1" and drop the rest silently
        ("A = 1 ]\n", "job ad line 1: cannot parse the value of A"),
        ("A = 1 ; B = 2\n", "job ad line 1: cannot parse the value of A"),
        ("A = ) + 1\n", "job ad line 1: cannot parse the value of A"),  # a stray bracket
    ],
)
def test_malformed_old_syntax_raises_ad_error_naming_the_line(text, message):
    with pytest.raises(AdError) as info:
        ads.parse_ad(text, "job ad")
    assert str(info.value) == message


@pytest.mark.parametrize("text", ["[ A = 1 ]\n# c", "[ A = = ]", "[", "[ A = 1; B = ]"])
def test_malformed_new_syntax_raises_ad_error(text):
    with pytest.raises(AdError) as info:
        ads.parse_ad(text, "machine ad")
    assert str(info.value) == "machine ad: not a valid new-syntax ClassAd"


@pytest.mark.parametrize("text", [OLD_JOB_AD, NEW_MACHINE_AD])
def test_every_truncation_parses_or_raises_ad_error(text):
    data = text.encode()
    for end in range(len(data) + 1):
        chunk = data[:end].decode(errors="replace")  # like read_ad
        with contextlib.suppress(AdError):
            ads.parse_ad(chunk, "ad")


def test_a_truncated_old_syntax_ad_never_invents_attributes():
    full = set(ads.parse_ad(OLD_JOB_AD, "ad"))
    data = OLD_JOB_AD.encode()
    for end in range(len(data) + 1):
        try:
            ad = ads.parse_ad(data[:end].decode(errors="replace"), "ad")
        except AdError:
            continue
        assert set(ad) <= full


def test_an_old_syntax_ad_cut_inside_a_string_is_an_error():
    cut = OLD_JOB_AD.index("/bin/sl")
    with pytest.raises(AdError, match="line 4: cannot parse the value of Cmd"):
        ads.parse_ad(OLD_JOB_AD[:cut], "job ad")


@pytest.mark.parametrize("junk", ["junk", "\x00", "]]]", "= 1", "A =", "\ufffd", "A = (("])
def test_old_syntax_with_trailing_junk_raises_ad_error_on_the_junk_line(junk):
    text = OLD_JOB_AD + junk + "\n"
    with pytest.raises(AdError, match=f"^job ad line {OLD_JOB_AD.count(chr(10)) + 1}: "):
        ads.parse_ad(text, "job ad")


def test_every_strict_truncation_of_a_new_syntax_ad_is_an_error():
    stripped = NEW_MACHINE_AD.strip()
    for end in range(1, len(stripped)):
        with pytest.raises(AdError):
            ads.parse_ad(stripped[:end], "machine ad")


@pytest.mark.parametrize(
    "junk", [" junk", " [", " [ B = 2 ]", "\n[ B = 2 ]", ' "y"', " + 1", " ;;", " // c"]
)
def test_new_syntax_with_trailing_junk_raises_ad_error(junk):
    with pytest.raises(AdError) as info:
        ads.parse_ad("[ A = 1 ]" + junk, "machine ad")
    assert str(info.value) == "machine ad: not a valid new-syntax ClassAd"


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ('Iwd = "C:\\dir\\"', "C:\\dir\\"),
        ('Iwd = "a\\b"', "a\\b"),
        ('Iwd = "x\\n"', "x\\n"),
        ('Iwd = "\\"', "\\"),
    ],
)
def test_old_syntax_backslashes_are_literal(line, value):
    assert ads.parse_ad(line + "\n", "job ad").eval("Iwd") == value


@pytest.mark.parametrize("value", ["C:\\dir\\", "a\\b", "back\\slash", "x\\n", 'say \\"hi\\"'])
def test_old_syntax_written_by_htcondor_reads_back_the_same_strings(value):
    written = classad2.ClassAd({"Iwd": value}).printOld()
    assert classad2.parseOne(written, classad2.ParserType.Old).eval("Iwd") == value
    assert ads.parse_ad(written, "job ad").eval("Iwd") == value


# -- read_ad -------------------------------------------------------------------------------


def test_read_ad_of_no_path_is_an_empty_ad():
    ad = ads.read_ad(None, "machine ad")
    assert isinstance(ad, classad2.ClassAd)
    assert len(ad) == 0


def test_read_ad_of_a_missing_file_is_an_ad_error(tmp_path):
    path = tmp_path / "missing.ad"
    with pytest.raises(AdError) as info:
        ads.read_ad(path, "job ad")
    assert str(info.value) == f"job ad {path}: No such file or directory"


def test_read_ad_of_a_directory_is_an_ad_error(tmp_path):
    with pytest.raises(AdError) as info:
        ads.read_ad(tmp_path, "job ad")
    assert str(info.value) == f"job ad {tmp_path}: not a regular file"


def test_read_ad_names_the_file_and_line(tmp_path):
    path = tmp_path / ".job.ad"
    path.write_text("A = 1\nbad\n")
    with pytest.raises(AdError) as info:
        ads.read_ad(str(path), "job ad")
    assert str(info.value) == f"job ad {path} line 2: expected 'Attribute = value', got 'bad'"


def test_read_ad_replaces_undecodable_bytes(tmp_path):
    path = tmp_path / ".job.ad"
    path.write_bytes(b'A = "\xff"\nB = 2\n')
    ad = ads.read_ad(path, "job ad")
    assert ad.eval("A") == "\ufffd"
    assert ad.eval("B") == 2


# -- evaluate ------------------------------------------------------------------------------


def test_evaluate_absent_and_undefined_are_none():
    ad = classad2.parseOne("[A = undefined; B = TARGET.Nope; C = 1]")
    assert ads.evaluate(ad, "Missing") is None
    assert ads.evaluate(ad, "A") is None
    assert ads.evaluate(ad, "B", classad2.ClassAd()) is None
    assert ads.evaluate(ad, "C") == 1


def test_evaluate_error_is_the_error_value():
    ad = classad2.parseOne('[A = 1/"x"]')
    assert ads.evaluate(ad, "A") is classad2.Value.Error
    assert ads.evaluate(ad, "A", classad2.ClassAd()) is classad2.Value.Error


# -- format_old and write_atomically --------------------------------------------------------


def test_format_old_is_sorted_and_typed():
    text = ads.format_old(
        {"NetworkIncoming": 10, "LarkNetworkType": "nat", "Flag": True, "Off": False, "Mb": 0.5}
    )
    assert text == (
        'Flag = true\nLarkNetworkType = "nat"\nMb = 0.5\nNetworkIncoming = 10\nOff = false\n'
    )


def test_format_old_of_nothing_is_empty():
    assert ads.format_old({}) == ""


HOSTILE_STRINGS = [
    'x"\nB = 2',
    'a\nB = 2\nC = "',
    "x\rB = 2",
    "\nB = 2\n",
    "tab\there",
    '\\"\nB = 2',
    "nul\x00B = 2",
    "x\\\n",
    "\x1b[31m\x7f",
    "a\u2028B = 2\x85",
]


@pytest.mark.parametrize("value", HOSTILE_STRINGS)
def test_format_old_strings_cannot_inject_attributes(value):
    text = ads.format_old({"A": value, "Z": 1})
    lines = text.splitlines()
    assert text.count("\n") == len(lines) == 2  # exactly one line per attribute
    assert lines[0].startswith("A = ")
    assert lines[1] == "Z = 1"
    expected = "".join(c if c.isprintable() else "?" for c in value)
    assert "?" in expected
    parsed = ads.parse_ad(text, "update ad")
    assert items(parsed) == {"A": expected, "Z": 1}
    by_htcondor = classad2.parseOne(text, classad2.ParserType.Old)
    assert {key: by_htcondor.eval(key) for key in by_htcondor} == {"A": expected, "Z": 1}


def test_format_old_replaces_each_control_character_by_one_question_mark():
    text = ads.format_old({"A": "a\nb\r\tc\x00d"})
    assert text == 'A = "a?b??c?d"\n'


@pytest.mark.parametrize("value", ["\n", "\r\n", "\x00", "\t\t"])
def test_format_old_of_only_control_characters_is_question_marks(value):
    parsed = ads.parse_ad(ads.format_old({"A": value}), "update ad")
    assert parsed.eval("A") == "?" * len(value)


PRINTABLE_HOSTILE_STRINGS = [
    'q"; B = 2; C = "',
    '"]; B = 2; [',
    "x\\",
    "back\\slash",
    "C:\\dir\\",
    '\\"',
    '"',
    "\\",
    "a /* b",
    "# not a comment",
    "",
    "".join(chr(c) for c in range(32, 127)),  # all of printable ASCII
]


@pytest.mark.parametrize("value", PRINTABLE_HOSTILE_STRINGS)
def test_format_old_printable_ascii_strings_read_back_unchanged(value):
    text = ads.format_old({"A": value, "Z": 1})
    assert len(text.splitlines()) == 2
    assert items(ads.parse_ad(text, "update ad")) == {"A": value, "Z": 1}
    assert classad2.parseOne(text, classad2.ParserType.Old).eval("A") == value


def test_write_atomically_writes_the_text_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / ".update.ad"
    ads.write_atomically(path, "A = 1\n")
    ads.write_atomically(path, "A = 2\n")
    assert path.read_text() == "A = 2\n"
    assert os.listdir(tmp_path) == [".update.ad"]


def test_write_atomically_failure_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / ".update.ad"
    path.write_text("A = 1\n")
    with pytest.raises(UnicodeEncodeError):
        ads.write_atomically(path, "A = \udcff\n")  # a lone surrogate cannot be encoded
    assert path.read_text() == "A = 1\n"
    assert os.listdir(tmp_path) == [".update.ad"]


def test_write_atomically_writes_beside_the_ad_under_a_hidden_name(tmp_path, monkeypatch):
    """The text goes to a hidden file in the ad's own directory, then is renamed over the ad:
    a rename within one file system, and a file the starter does not take for the job's."""
    renamed = []
    replace = os.replace

    def spy(src, dst):
        renamed.append((os.path.dirname(src), os.path.basename(src), dst))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    path = tmp_path / ".update.ad"
    ads.write_atomically(path, "A = 1\n")
    [(directory, name, dst)] = renamed
    assert (directory, dst) == (str(tmp_path), path)
    assert name.startswith(".") and ".update.ad." in name  # hidden, and named for the ad


# -- bounds: size, depth, evaluation --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("1 + 2", 1),
        ("1 + 2 * 3 - 4", 3),
        ("(1)", 1),
        ("((((1))))", 4),
        ("f(1, 2) + f(a + b, c)", 3),  # a ',' ends a chain; brackets count
        ('"a + b + c" + 1', 1),  # strings are skipped whole
        ('"a \\" + b" + 1', 1),  # with escaped quotes
        ("'weird+name' + 1", 1),
        ("{ 1 + 1, 1 + 1, 1 + 1 }", 2),
        ("[ a = 1 + 1; b = 1 + 1 ]", 3),  # '=' is an operator character too
        ("a =?= b && c != d || !e", 5),  # a run of operator characters is one operator
        ("1" + "+1" * 999, 999),
        ("f(" * 50 + "1" + ")" * 50, 50),
        ("(1 + 1) + 1 + 1 + 1", 3),  # a closed bracket's chain is done with
        ("1 + 1, 1 + 1 + 1", 2),  # a ',' ends a chain outside brackets too
        ("1 ) ) + 1", 1),  # a stray closing bracket is not counted, nor does it fail
    ],
)
def test_expression_depth_bounds_the_tree_without_parsing(text, depth):
    assert ads.expression_depth(text) == depth


def test_expression_depth_is_at_least_the_parse_tree_depth_of_a_chain():
    """classad's evaluator gives up on chains of ~450 operators: the bound is not too strict
    for any expression classad can evaluate, and always catches the printer-crashing ones."""
    for n in (400, 60_000):
        assert ads.expression_depth("+".join(["1"] * n)) == n - 1


def test_a_too_deep_value_is_an_error_naming_the_line():
    deep = "+".join(["1"] * 1002)
    with pytest.raises(AdError) as info:
        ads.parse_ad(f"A = 1\nFoo = {deep}\n", "job ad x")
    assert str(info.value) == (
        "job ad x line 2: the value of Foo is nested too deeply (more than 1000 chained "
        "operators and brackets)"
    )
    with pytest.raises(AdError, match=r"^job ad x is nested too deeply"):
        ads.parse_ad(f"[ Foo = {deep} ]", "job ad x")
    assert "Foo" in ads.parse_ad("Foo = " + "+".join(["1"] * 1001), "x")


def test_read_ad_refuses_what_is_not_a_regular_file(tmp_path):
    for path in ("/dev/zero", "/dev/null"):
        with pytest.raises(AdError, match=f"^job ad {path}: not a regular file$"):
            ads.read_ad(path, "job ad")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes: reading would wait for ever
    with pytest.raises(AdError, match=r"not a regular file$"):
        ads.read_ad(fifo, "job ad")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    (tmp_path / "target").write_text("A = 1\n")
    with pytest.raises(AdError, match=r"is a symbolic link$"):
        ads.read_ad(link, "job ad")


def test_read_ad_reads_at_most_the_size_cap(tmp_path):
    path = tmp_path / "big.ad"
    path.write_text("A = 1\n" + "#" * ads.AD_MAX_BYTES)
    with pytest.raises(AdError, match=r"larger than 1024 KiB$"):
        ads.read_ad(path, "job ad")
    path.write_text("A = 1\n" + "#" * (ads.AD_MAX_BYTES - 7) + "\n")
    assert ads.read_ad(path, "job ad").eval("A") == 1


def test_evaluate_bounded_returns_literal_values():
    job = ads.parse_ad(
        'ClusterId = 7\nS = "r\u00e9my"\nF = 1.5\nB = true\nL = { 1 }\nE = "a" + 1\n'
        "U = undefined\nR = ClusterId * 2\n",
        "job",
    )
    machine = ads.parse_ad('T = ifThenElse(TARGET.ClusterId == 7, "none", "nat")\n', "m")
    got_job, got_machine = ads.evaluate_bounded(
        [
            ads.Evaluation(job, ("ClusterId", "S", "F", "B", "L", "E", "U", "R", "Missing")),
            ads.Evaluation(machine, ("T",), job),
        ]
    )
    assert items(got_job) == {
        "ClusterId": 7,
        "S": "r\u00e9my",
        "F": 1.5,
        "B": True,
        "L": classad2.Value.Error,  # not a plain value: nothing Lark reads is a list
        "E": classad2.Value.Error,
        "R": 14,
    }
    assert items(got_machine) == {"T": "none"}
    assert ads.evaluate(got_machine, "T", classad2.ClassAd()) == "none"


def test_evaluate_bounded_runs_as_the_given_user(monkeypatch):
    """The evaluation (here one that reports who runs it) runs as the given user and group
    with no supplementary groups, in the child only: the parent keeps root."""
    ad = ads.parse_ad("A = 1\n", "x")
    if os.geteuid() != 0:
        pytest.skip("needs root to change identity")
    assert items(ads.evaluate_bounded([ads.Evaluation(ad, ("A",))], (65534, 65534))[0]) == {"A": 1}

    def who(ad, attr, target):
        return f"{os.getuid()} {os.geteuid()} {os.getgid()} {os.getegid()} {os.getgroups()}"

    monkeypatch.setattr(ads, "evaluate", who)  # (the forked child has it too)
    [got] = ads.evaluate_bounded([ads.Evaluation(ad, ("A",))], (65534, 65533))
    assert got.eval("A") == "65534 65534 65533 65533 []"
    [got] = ads.evaluate_bounded([ads.Evaluation(ad, ("A",))])  # none given: root's
    assert got.eval("A").startswith("0 0 0 0 ")
    assert (os.getuid(), os.geteuid()) == (0, 0)


@pytest.mark.slow
def test_evaluate_bounded_stops_a_runaway_evaluation(monkeypatch):
    monkeypatch.setattr(ads, "EVAL_CPU_S", 1)
    text = "A0 = 1\n" + "".join(f"A{i} = A{i - 1} + A{i - 1}\n" for i in range(1, 41))
    ad = ads.parse_ad(text + "".join(f"W{i} = A40\n" for i in range(8)), "x")
    with pytest.raises(AdError) as info:
        ads.evaluate_bounded([ads.Evaluation(ad, tuple(f"W{i}" for i in range(8)))])
    assert str(info.value) == (
        "evaluating the ads took too long (a self-referencing or runaway expression?)"
    )


@pytest.fixture
def forked(monkeypatch):
    """The pids of the children evaluate_bounded forks."""
    pids: list[int] = []
    fork = os.fork

    def spy():
        pid = fork()
        pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", spy)
    return pids


def reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_evaluate_bounded_runs_under_its_limits(monkeypatch):
    """The child (here an evaluation that reports its limits) may use 2 s of CPU and 1 GiB of
    memory, and dumps no core; the parent's own limits stay as they were."""
    kinds = (resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_CORE)
    before = [resource.getrlimit(kind) for kind in kinds]

    def limits(ad, attr, target):
        return str([resource.getrlimit(kind) for kind in kinds])

    monkeypatch.setattr(ads, "evaluate", limits)
    [got] = ads.evaluate_bounded([ads.Evaluation(ads.parse_ad("A = 1\n", "x"), ("A",))])
    assert got.eval("A") == str([(2, 2), (1 << 30, 1 << 30), (0, 0)])
    assert [resource.getrlimit(kind) for kind in kinds] == before


def test_evaluate_bounded_stops_an_evaluation_at_its_wall_clock_bound(monkeypatch, forked):
    """An evaluation that uses no CPU but never ends (here one that sleeps) is killed when
    its wall-clock time is up, and reaped."""
    monkeypatch.setattr(ads, "EVAL_WALL_S", 0.5)
    monkeypatch.setattr(ads, "evaluate", lambda ad, attr, target: time.sleep(10))
    ad = ads.parse_ad("A = 1\n", "x")
    start = time.monotonic()
    with pytest.raises(AdError) as info:
        ads.evaluate_bounded([ads.Evaluation(ad, ("A",))])
    assert time.monotonic() - start < 5
    assert str(info.value) == (
        "evaluating the ads took too long (a self-referencing or runaway expression?)"
    )
    [pid] = forked
    assert reaped(pid)


def test_a_quick_evaluation_passes_a_short_wall_clock_bound(monkeypatch, forked):
    monkeypatch.setattr(ads, "EVAL_WALL_S", 0.8)
    ad = ads.parse_ad("A = 1 + 1\n", "x")
    assert items(ads.evaluate_bounded([ads.Evaluation(ad, ("A",))])[0]) == {"A": 2}
    [pid] = forked
    assert reaped(pid)


def test_a_value_larger_than_a_pipes_buffer_comes_back_whole():
    value = "".join(chr(ord("a") + i % 26) for i in range(300_000))
    ad = ads.parse_ad(f'S = "{value}"\nN = 1\n', "x")
    [got] = ads.evaluate_bounded([ads.Evaluation(ad, ("S", "N"))])
    assert items(got) == {"S": value, "N": 1}


def _die(ad, attr, target):
    os.kill(os.getpid(), signal.SIGTERM)


def _fail(ad, attr, target):
    raise MemoryError


def _say_nothing(ad, attr, target):
    os._exit(0)


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        (_die, "evaluating the ads failed (SIGTERM)"),
        (_fail, "evaluating the ads failed (out of memory, or an evaluator error)"),
        (_say_nothing, "evaluating the ads failed (no result from the evaluator)"),
    ],
)
def test_a_failed_evaluation_is_one_line_saying_how(evaluation, message, monkeypatch, forked):
    monkeypatch.setattr(ads, "evaluate", evaluation)
    with pytest.raises(AdError) as info:
        ads.evaluate_bounded([ads.Evaluation(ads.parse_ad("A = 1\n", "x"), ("A",))])
    assert str(info.value) == message
    [pid] = forked
    assert reaped(pid)


def test_a_failed_evaluation_never_returns_into_the_callers_code(monkeypatch):
    """The child ends however its evaluation fails: one that came back from evaluate_bounded
    would go on as a second copy of the agent. (Here, one that came back ends as a child
    that said nothing, which the parent would tell apart.)"""
    parent = os.getpid()
    monkeypatch.setattr(ads, "evaluate", _fail)
    message = None
    try:
        ads.evaluate_bounded([ads.Evaluation(ads.parse_ad("A = 1\n", "x"), ("A",))])
    except AdError as exc:
        message = str(exc)
    finally:
        if os.getpid() != parent:
            os._exit(0)
    assert message == "evaluating the ads failed (out of memory, or an evaluator error)"


@pytest.mark.parametrize("value", HOSTILE_STRINGS + PRINTABLE_HOSTILE_STRINGS)
def test_format_for_script_gives_one_line_per_attribute(value):
    ad = classad2.ClassAd()
    ad["A"] = value
    ad["Z"] = 1
    text = ads.format_for_script(ad)
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 3
    assert all(line.isprintable() for line in lines)
    assert sorted(line.split(" = ")[0] for line in lines[:2]) == ["A", "Z"]
    back = classad2.parseOne(text, classad2.ParserType.Old)
    assert back.eval("Z") == 1 and isinstance(back.eval("A"), str)


def test_format_for_script_keeps_printable_strings_as_htcondor_prints_them():
    ad = ads.parse_ad('A = "C:\\dir\\ r\u00e9my"\nB = 1 + 2\n', "x")
    assert ads.format_for_script(ad) == 'A = "C:\\dir\\ r\u00e9my"\nB = 1 + 2\n'
    assert classad2.parseOne(ads.format_for_script(ad), classad2.ParserType.Old).eval("A") == (
        "C:\\dir\\ r\u00e9my"
    )


def test_reading_a_new_syntax_ad_does_not_load_htcondor2():
    """htcondor2's start-up resolves the host's name: on a node whose DNS is down (or a
    chroot without any) every job start would wait for it."""
    code = (
        "import sys; from lark_async.decide import ads; "
        "ad = ads.parse_ad('[ A = 1; B = \"x\" ]', 'x'); "
        "assert ad.eval('A') == 1 and ad.eval('B') == 'x'; "
        "print('htcondor2' in sys.modules)"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
