"""The EPIC kernel over the Jupyter protocol: jupyter_kernel_test conformance against the installed
kernelspec, then jupyter_client tests of what only a real kernel shows (live widget messages,
interrupts, the Cancel button, errors, namespaces, the IOPub message budget)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("ipykernel")
pytest.importorskip("anywidget")
jkt = pytest.importorskip("jupyter_kernel_test")

from jupyter_client.manager import start_new_kernel  # noqa: E402

from epic_kernel.install import install, kernel_json  # noqa: E402

TIMEOUT = 60


@contextlib.contextmanager
def epic_kernel_env() -> Iterator[str]:
    """Install the kernelspec under a temporary prefix and point this process (and the kernels it
    starts) at it; nothing is written to the user's Jupyter, IPython or cache folders."""
    tmp = tempfile.mkdtemp(prefix="epic-kernel-test-")
    env = {"JUPYTER_PATH": os.path.join(tmp, "share", "jupyter"), "JUPYTER_RUNTIME_DIR": os.path.join(tmp, "rt"),
           "IPYTHONDIR": os.path.join(tmp, "ipython"), "EPIC_CACHE_DIR": os.path.join(tmp, "cache"),
           "EPIC_BACKEND": "sim", "HF_HUB_OFFLINE": "1", "EPIC_VIEW": ""}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        install(prefix=tmp)
        yield tmp
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


def test_install_writes_an_absolute_interpreter_path(tmp_path):
    import json
    import sys

    dest = install(prefix=str(tmp_path), name="Epic-Test")
    spec = json.loads((tmp_path / "share/jupyter/kernels/epic-test/kernel.json").read_text())
    assert dest.endswith("epic-test") and spec == kernel_json()
    assert spec["argv"][0] == sys.executable and os.path.isabs(spec["argv"][0])
    assert spec["argv"][1:] == ["-m", "epic_kernel.kernel", "-f", "{connection_file}"]
    assert spec["display_name"] == "EPIC (Python 3)" and spec["language"] == "python"
    with pytest.raises(ValueError):
        install(user=True, prefix=str(tmp_path))


# ----------------------------------------------------------------------------------- conformance
@pytest.mark.kernel
class TestEpicKernelConformance(jkt.KernelTests):
    """The protocol as any Python kernel speaks it (no widgets here: the validator has no comm schemas)."""

    kernel_name = "epic"
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "6 * 7", "result": "42"},
        {"code": "%%epic --backend sim --view none\nx = 2\nx * 21", "result": "42"},
    ]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>epic</b>'))", "mime": "text/html"},
    ]
    code_clear_output = "from IPython.display import clear_output; clear_output()"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    code_page_something = "print?"
    code_inspect_sample = "zip"
    code_history_pattern = "6 * 7"
    supported_history_operations = ("tail", "search")

    _env: Any = None

    @classmethod
    def setUpClass(cls) -> None:
        cls._env = epic_kernel_env()
        cls._env.__enter__()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            cls.kc.stop_channels()
            cls.km.shutdown_kernel(now=True)
        finally:
            cls._env.__exit__(None, None, None)

    def test_epic_identity(self) -> None:
        self.flush_channels()
        self.kc.kernel_info()
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)["content"]
        assert reply["implementation"] == "epic" and reply["language_info"]["name"] == "python"
        assert reply["banner"].startswith("EPIC ") and any(h["text"] == "epic-kernel" for h in reply["help_links"])


# ------------------------------------------------------------------------------ jupyter_client
@pytest.fixture(scope="module")
def kernel():
    with epic_kernel_env():
        km, kc = start_new_kernel(kernel_name="epic", startup_timeout=TIMEOUT)
        try:
            reply, _ = execute(kc, "from epic_kernel.llm.sim import SimBackend\n"
                                   "slow = SimBackend(latency=0.4)\nfast = SimBackend(latency=0.01)\n"
                                   "stuck = SimBackend(latency=30.0)\n")
            assert reply["content"]["status"] == "ok"
            yield km, kc
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def execute(kc: Any, code: str, timeout: float = TIMEOUT) -> tuple[dict, list[tuple[float, dict]]]:
    """Run `code`; return the execute_reply and every IOPub message with its arrival time (s)."""
    t0 = time.monotonic()
    msgs: list[tuple[float, dict]] = []
    reply = kc.execute_interactive(code, output_hook=lambda m: msgs.append((time.monotonic() - t0, m)),
                                   timeout=timeout)
    return reply, msgs


def of_type(msgs: list[tuple[float, dict]], *types: str) -> list[tuple[float, dict]]:
    return [(t, m) for t, m in msgs if m["msg_type"] in types]


def text_of(msgs: list[tuple[float, dict]]) -> str:
    out = []
    for _, m in msgs:
        c = m["content"]
        if m["msg_type"] == "stream":
            out.append(c["text"])
        elif m["msg_type"] == "error":
            out.append("\n".join(c["traceback"]))
        elif m["msg_type"] in ("execute_result", "display_data", "update_display_data"):
            out.append(c["data"].get("text/plain", ""))
    return "\n".join(out)


@pytest.mark.kernel
def test_widget_updates_arrive_while_the_cell_runs(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, '%%epic --backend slow --no-cache\na = llm("one")\nb = llm(a)\nc = llm(b)\nlen(c) > 0')
    assert reply["content"]["status"] == "ok"
    end = of_type(msgs, "execute_result")[0][0]
    opens = of_type(msgs, "comm_open")
    live = [m for _, m in opens if m["content"]["data"]["state"].get("_anywidget_id", "").endswith("LiveWidget")]
    assert len(live) == 1
    updates = [t for t, m in of_type(msgs, "comm_msg") if m["content"]["comm_id"] == live[0]["content"]["comm_id"]]
    assert len(updates) >= 3
    assert updates[0] < end - 0.6 and updates[1] < end - 0.2          # updates came during the ~1.2 s cell
    states = [m["content"]["data"]["state"].get("header", {}).get("state") for _, m in of_type(msgs, "comm_msg")]
    assert "running" in states and states[-1] == "done"
    display = of_type(msgs, "display_data")[0][1]["content"]
    assert "application/vnd.jupyter.widget-view+json" in display["data"] and "text/html" in display["data"]
    final = of_type(msgs, "update_display_data")[-1][1]["content"]["data"]
    assert final["text/html"].count('<tr data-state="done"') == 3 and "[done]" in final["text/plain"]


@pytest.mark.kernel
def test_interrupt_cancels_in_flight_calls_with_one_line(kernel):
    km, kc = kernel
    timer = threading.Timer(0.8, km.interrupt_kernel)
    timer.start()
    t0 = time.monotonic()
    reply, msgs = execute(kc, '%%epic --backend stuck --no-cache\nxs = [llm(f"q{i}") for i in range(6)]\nxs')
    took = time.monotonic() - t0
    timer.join()
    content = reply["content"]
    assert content["status"] == "error" and content["ename"] == "EpicInterrupted"
    assert took < 3.0                                          # 30 s calls, cancelled within a second or so
    errors = of_type(msgs, "error")
    assert len(errors) == 1 and len(errors[0][1]["content"]["traceback"]) == 1
    assert "6 cancelled" in content["evalue"] and "Traceback" not in text_of(msgs)
    final = of_type(msgs, "update_display_data")[-1][1]["content"]["data"]["text/plain"]
    assert "[cancelled]" in final

    reply, msgs = execute(kc, '%%epic --backend fast\nllm("next")\n')
    assert reply["content"]["status"] == "ok"
    reply, msgs = execute(kc, "[c.state for c in _epic_last.calls]")
    assert "'done'" in text_of(msgs)


@pytest.mark.kernel
def test_cancel_button_cancels_the_running_cell(kernel):
    import ipykernel

    if ipykernel.version_info < (7, 4):
        pytest.skip("comm messages during a running cell need ipykernel >= 7.4")
    _, kc = kernel
    msg_id = kc.execute('%%epic --backend stuck --no-cache\n[llm(f"c{i}") for i in range(3)]\n')
    cid = clicked = None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if msg["msg_type"] == "comm_open" and content["data"]["state"].get("_anywidget_id", "").endswith("LiveWidget"):
            cid = content["comm_id"]
            assert content["data"]["state"]["cancellable"] is True
        elif msg["msg_type"] == "comm_msg" and cid and clicked is None and content["data"]["state"].get("rows"):
            clicked = time.monotonic()             # the front end's model.send({type: "cancel"})
            kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": cid, "data": {
                "method": "custom", "content": {"type": "cancel"}}}))
        elif msg["msg_type"] == "status" and content["execution_state"] == "idle":
            break
    assert clicked is not None and time.monotonic() - clicked < 3.0
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "EpicInterrupted"


@pytest.mark.kernel
def test_syntax_error_names_the_cell_line(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "%%epic --backend fast\nx = 1\ny = 2\nwhile True:\n    yield x\n")
    content = reply["content"]
    assert content["status"] == "error" and content["ename"] == "EpicCellSyntaxError"
    tb = "\n".join(content["traceback"])
    assert "line 5" in tb and "yield" in tb and len(content["traceback"]) <= 4
    assert not of_type(msgs, "comm_open", "display_data")           # nothing ran, nothing displayed


@pytest.mark.kernel
def test_runtime_error_names_the_failing_call_line(kernel):
    _, kc = kernel
    execute(kc, "def parse(s):\n    raise ValueError('not a number: ' + s[:10])\n")
    reply, msgs = execute(kc, '%%epic --backend fast\nanswer = llm("a number")\n\nn = parse(answer)\nn + 1\n')
    content = reply["content"]
    assert content["status"] == "error" and content["ename"] == "EpicError"
    tb = "\n".join(content["traceback"])
    assert "line 4" in tb and "ValueError: not a number" in tb and "site-packages" not in tb
    reply, msgs = execute(kc, "type(answer).__name__, _epic_last.state")
    assert "('str', 'failed')" in text_of(msgs)


@pytest.mark.kernel
def test_names_flow_python_to_epic_to_python(kernel):
    _, kc = kernel
    execute(kc, "topics = ['owls', 'cats']\ndef tag(s):\n    return '#' + s\n")
    reply, msgs = execute(kc, '%%epic --backend fast --view none\n'
                              'def describe(t):\n    return tag(llm(f"describe {t}"))\n'
                              'descriptions = [describe(t) for t in topics]\nlen(descriptions)\n')
    assert reply["content"]["status"] == "ok" and text_of(msgs).strip() == "2"
    reply, msgs = execute(kc, "all(d.startswith('#') for d in descriptions), describe('fish')[:1]")
    assert reply["content"]["status"] == "ok" and text_of(msgs).strip() == "(True, '#')"


@pytest.mark.kernel
def test_two_thousand_calls_stay_within_the_message_budget(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, '%%epic --backend fast --no-cache\nxs = [llm(f"question {i}") for i in range(2000)]\n'
                              'len(xs)\n', timeout=120)
    assert reply["content"]["status"] == "ok" and "2000" in text_of(of_type(msgs, "execute_result"))
    duration = msgs[-1][0] - msgs[0][0]
    comm_msgs = len(of_type(msgs, "comm_msg"))
    assert 1 <= comm_msgs <= 20 * duration + 5, (comm_msgs, duration)
    assert len(msgs) <= 20 * duration + 20                      # and no other flood (prints, displays)
    final = of_type(msgs, "update_display_data")[-1][1]["content"]["data"]["text/plain"]
    assert "2000 calls" in final and "2000 done" in final


@pytest.mark.kernel
def test_sync_fallback_without_autoawait_streams_and_interrupts(kernel):
    """`%autoawait off`: the cell magic runs the program on the private loop thread instead."""
    km, kc = kernel
    execute(kc, "%autoawait off")
    try:
        reply, msgs = execute(kc, '%%epic --backend slow --no-cache\na = llm("one")\nb = llm(a)\nc = llm(b)\n'
                                  "len(c) > 0")
        assert reply["content"]["status"] == "ok" and "True" in text_of(of_type(msgs, "execute_result"))
        end = of_type(msgs, "execute_result")[0][0]
        updates = [t for t, _ in of_type(msgs, "comm_msg")]
        assert len(updates) >= 3 and updates[1] < end - 0.2           # live from the loop thread

        timer = threading.Timer(0.8, km.interrupt_kernel)
        timer.start()
        t0 = time.monotonic()
        reply, msgs = execute(kc, '%%epic --backend stuck --no-cache\n[llm(f"s{i}") for i in range(4)]\n')
        timer.join()
        assert time.monotonic() - t0 < 3.0
        assert reply["content"]["ename"] == "EpicInterrupted" and "4 cancelled" in reply["content"]["evalue"]
        assert len(reply["content"]["traceback"]) == 1
    finally:
        execute(kc, "%autoawait on")
    reply, msgs = execute(kc, '%%epic --backend fast\nllm("async again")\n')
    assert reply["content"]["status"] == "ok"


def _stdout(msgs: list[tuple[float, dict]]) -> str:
    return "".join(m["content"]["text"] for _, m in of_type(msgs, "stream") if m["content"]["name"] == "stdout")


@pytest.mark.kernel
def test_a_new_notebook_hints_at_epic_cells():
    """Notebooks never show the banner: the first plain cell says that %%epic exists (once), and
    llm() in a plain cell says where it lives."""
    with epic_kernel_env():
        km, kc = start_new_kernel(kernel_name="epic", startup_timeout=TIMEOUT)
        try:
            _, first = execute(kc, "x = 1")
            _, second = execute(kc, "x + 1")
            reply, third = execute(kc, 'llm("hello")')
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    assert _stdout(first).startswith("EPIC kernel: a cell that starts with %%epic") and _stdout(second) == ""
    assert reply["content"]["ename"] == "NameError"
    assert "hint: llm() is an epic builtin" in _stdout(third) and "%%epic" in _stdout(third)
