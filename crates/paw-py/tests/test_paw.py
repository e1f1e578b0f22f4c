"""The Python bindings on SmolLM2-135M: a program compiled from examples (teacher none, a few
training steps), then called as the published SDK calls programs.

Needs PAW_TEST_SMOLLM2 (the GGUF) installed in the store of PAW_HOME, as `.ci/run` sets up
(the tests link or copy it into a store of their own);
PAW_BIN (the `paw` binary) for the comparisons with `paw run`. Missing either fails the run.
"""

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

import paw

SMOLLM2 = os.environ["PAW_TEST_SMOLLM2"]
PAW_BIN = os.environ["PAW_BIN"]

SPEC = "Say whether the sentence is about the weather. Answer yes or no."
EXAMPLES = [
    ("It is raining hard outside.", "yes"),
    ("The train leaves at noon.", "no"),
    ("Expect snow and strong wind tonight.", "yes"),
    ("She bought three apples.", "no"),
]
INPUTS = ["Sunny skies all day.", "My cat sleeps a lot.", "Fog over the bay.", "Tax forms are due."]


def paw_run(program_ref, text):
    out = subprocess.run(
        [PAW_BIN, "run", "--json", program_ref, text],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)["output"]


def test_compile_stores_a_program_and_reports_progress(program):
    compiled, stages = program
    assert compiled.id.startswith("b3:") and len(compiled.id) == 3 + 64
    assert Path(compiled.path).is_file() and compiled.size == Path(compiled.path).stat().st_size
    assert not compiled.cached, "a fresh store cannot hold the program already"
    assert stages, "the progress callback was never called"
    assert {stage for stage, _, _ in stages} >= {"train"}
    assert dict(compiled.report), "the compile report is empty"
    again = paw.compile(SPEC, examples=EXAMPLES, interpreter=SMOLLM2, teacher="none", steps=4)
    assert again.cached and again.id == compiled.id


def test_answers_equal_paw_run_and_repeat(program):
    compiled, _ = program
    f = paw.function(compiled.id)
    assert f.id == compiled.id and f.spec == SPEC
    for text in INPUTS:
        answer = f(text)
        assert answer == f(text), "the same input gave different answers"
        assert answer == f.call(text).text
        assert answer == paw_run(compiled.id, text)


def test_batch_equals_single_calls(program):
    compiled, _ = program
    f = paw.function(compiled.id)
    singles = [f(text) for text in INPUTS]
    assert f.batch(INPUTS) == singles
    assert f.batch(INPUTS, batch_size=3) == singles
    assert f.batch([]) == []
    with pytest.raises(ValueError):
        f.batch(INPUTS, batch_size=0)


def test_every_kind_of_reference_opens_the_same_program(program, tmp_path):
    compiled, _ = program
    by_id = paw.function(compiled.id)
    by_prefix = paw.function(compiled.id[3:15])
    copy = tmp_path / "weather.paw"
    shutil.copyfile(compiled.path, copy)
    by_path = paw.function(str(copy))
    for f in (by_prefix, by_path):
        assert f.id == by_id.id
        assert f(INPUTS[0]) == by_id(INPUTS[0])


def test_output_details(program):
    compiled, _ = program
    out = paw.function(compiled.id).call(INPUTS[0], max_tokens=3)
    assert out.generated_tokens <= 3
    assert out.prompt_tokens > out.input_tokens > 0
    assert out.contract in ("satisfied", "unfinished", "not-applied")
    assert out.stop_reason and out.prefill_ms >= 0 and out.decode_ms >= 0
    assert "paw.Output" in repr(out)


def test_threads_give_the_answers_of_sequential_calls(program):
    compiled, _ = program
    f = paw.function(compiled.id)
    expected = [f(text) for text in INPUTS]
    results = [None] * (3 * len(INPUTS))

    def work(i):
        results[i] = f(INPUTS[i % len(INPUTS)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected * 3


def test_the_gil_is_released_while_the_model_runs(program):
    compiled, _ = program
    f = paw.function(compiled.id)
    inputs = INPUTS * 24
    started = time.monotonic()
    f.batch(inputs, max_tokens=4)
    call_seconds = time.monotonic() - started
    assert call_seconds > 0.5, "the call is too short to tell"

    worker = threading.Thread(target=f.batch, args=(inputs,), kwargs={"max_tokens": 4})
    worker.start()
    time.sleep(0.05)  # let the worker enter the model
    # If the call held the GIL, this loop would stall for the rest of the call.
    longest_gap, last, end = 0.0, time.monotonic(), time.monotonic() + call_seconds / 2
    while time.monotonic() < end and worker.is_alive():
        now = time.monotonic()
        longest_gap = max(longest_gap, now - last)
        last = now
    worker.join()
    assert longest_gap < min(0.2, call_seconds / 4), f"Python stalled {longest_gap:.3f}s"


def test_errors_are_typed(program, tmp_path):
    compiled, _ = program
    with pytest.raises(paw.ProgramError):
        paw.function("b3:" + "0" * 64)
    with pytest.raises(paw.ProgramError):
        paw.function(str(tmp_path / "missing.paw"))
    damaged = tmp_path / "damaged.paw"
    data = bytearray(Path(compiled.path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(paw.ProgramError):
        paw.function(str(damaged))
    f = paw.function(compiled.id)
    with pytest.raises(paw.InputError):
        f("weather " * (f.max_input_bytes // 4))
    with pytest.raises(paw.LockError):
        paw.function("weather", lock=str(tmp_path / "paw.lock"))
    with pytest.raises(paw.CompileError):
        paw.compile("   ", interpreter=SMOLLM2, teacher="none")
    with pytest.raises(TypeError):
        paw.compile(SPEC, interpreter=SMOLLM2, teacher="none", progress=3)
    assert issubclass(paw.InputError, paw.PawError)


def test_a_function_by_name_from_a_lock(program, tmp_path):
    compiled, _ = program
    project = tmp_path / "project"
    project.mkdir()
    (project / "examples.jsonl").write_text(
        "".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in EXAMPLES)
    )
    (project / "paw.toml").write_text(
        f"""[defaults]
interpreter = "{SMOLLM2}"
teacher = "none"
steps = 4

[[function]]
name = "weather"
spec = "{SPEC}"
examples = "examples.jsonl"
"""
    )
    subprocess.run([PAW_BIN, "build"], cwd=project, check=True, capture_output=True)
    by_lock = paw.function("weather", lock=str(project / "paw.lock"))
    assert by_lock.name == "weather"
    cwd = os.getcwd()
    os.chdir(project)
    try:
        by_name = paw.function("weather")  # ./paw.lock
    finally:
        os.chdir(cwd)
    assert by_name.id == by_lock.id
    assert by_lock(INPUTS[0]) == paw_run(by_lock.id, INPUTS[0])
    with pytest.raises(paw.LockError):
        paw.function("nope", lock=str(project / "paw.lock"))
    with pytest.raises(paw.LockError):
        paw.function("weather", lock=str(project / "paw.lock"), model=SMOLLM2)
