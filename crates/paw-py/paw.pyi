"""Fuzzy functions: programs compiled from a spec, run by a small local interpreter."""

from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

__version__: str

class PawError(Exception): ...
class ProgramError(PawError): ...
class InterpreterError(PawError): ...
class LockError(PawError): ...
class InputError(PawError): ...
class CompileError(PawError): ...
class RunError(PawError): ...

class Output:
    text: str
    stop_reason: str
    contract: str
    prompt_tokens: int
    input_tokens: int
    generated_tokens: int
    prefill_ms: float
    decode_ms: float

class Function:
    id: str
    name: Optional[str]
    spec: str
    interpreter: str
    max_input_bytes: int
    def __call__(self, input: str, /, *, max_tokens: Optional[int] = None) -> str: ...
    def call(
        self, input: str, /, *, max_tokens: Optional[int] = None, contract: bool = True
    ) -> Output: ...
    def batch(
        self,
        inputs: Sequence[str],
        /,
        *,
        max_tokens: Optional[int] = None,
        batch_size: int = 8,
    ) -> list[str]: ...

class Program:
    id: str
    path: Path
    size: int
    cached: bool
    report: list[Tuple[str, str]]

def function(
    program: str,
    /,
    *,
    lock: Optional[Union[str, Path]] = None,
    model: Optional[str] = None,
    home: Optional[Union[str, Path]] = None,
) -> Function: ...
def compile(
    spec: str,
    /,
    *,
    examples: Optional[Sequence[Tuple[str, str]]] = None,
    interpreter: Optional[str] = None,
    teacher: Optional[str] = None,
    seed: int = 0,
    steps: Optional[int] = None,
    progress: Optional[Callable[[str, int, int, Optional[str]], object]] = None,
    home: Optional[Union[str, Path]] = None,
) -> Program: ...
