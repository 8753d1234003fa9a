"""linattn contexts: thread pool and kernel family (ISA) of a series of calls."""

from __future__ import annotations

import ctypes
import operator
import threading

from . import _lib


def _isa_code(isa: str | int | None) -> int:
    if isa is None:
        return _lib.ISA_AUTO
    codes = _lib.isa_codes()
    if isinstance(isa, int):
        if isa not in codes.values():
            raise ValueError(f"unknown isa code {isa}")
        return isa
    try:
        return codes[isa.lower()]
    except KeyError:
        raise ValueError(f"unknown isa {isa!r}; expected one of {', '.join(codes)}") from None


def isa_available(isa: str) -> bool:
    """True if this build and this CPU can run the kernel family `isa` ("auto" is always)."""
    code = _isa_code(isa)
    return code == _lib.ISA_AUTO or bool(_lib.lib().linattn_isa_available(code))


def available_isas() -> list[str]:
    """Kernel families usable here, e.g. ["reference", "scalar", "avx2", "avx512"]."""
    return [name for name in _lib.isa_codes() if name != "auto" and isa_available(name)]


def _thread_count(threads) -> int:
    """threads as the C int32 num_threads: a value outside int32 would wrap (2**31 to -2**31, 2**32+1
    to 1), so it gets the library's own message here; the library checks the rest."""
    try:
        v = operator.index(threads)
    except TypeError:
        raise TypeError(f"threads: expected an integer, got {threads!r}") from None
    if not -(2**31) <= v < 2**31:
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT,
                                f"options.num_threads: expected 0..{_lib.MAX_THREADS} (0 = all CPUs), got {v}")
    return v


class Context:
    """A linattn_context: `threads` workers (0 = every online CPU, 1 = the caller only), a kernel
    family `isa` ("auto" = best for this CPU, or the LINATTN_ISA environment variable) and how
    decode writes a separate present_state, `state_stores` ("auto", "cached", "streaming"; see
    linattn_state_stores in include/linattn.h).

    A context may be shared by several Python threads. close() (or leaving a `with` block) stops
    it: calls in flight on other threads finish normally (close waits for them), every later call
    raises (ValueError, or LinattnError "context: closed" for a call that raced with close), and
    the worker threads are joined. The library's small context record is freed when the Context
    is garbage collected, which no thread still using it allows: so no interleaving of calls and
    close() can touch freed memory.
    """

    STATE_STORES = {"auto": 0, "cached": 1, "streaming": 2}

    def __init__(self, threads: int = 0, isa: str = "auto", state_stores: str = "auto"):
        self._handle = ctypes.c_void_p()
        self._closed = False
        self._close_lock = threading.Lock()
        options = _lib.ContextOptions()
        lib = _lib.lib()
        lib.linattn_context_options_init(ctypes.byref(options))
        options.num_threads = _thread_count(threads)
        options.isa = _isa_code(isa)
        if state_stores not in self.STATE_STORES:
            raise ValueError(f"unknown state_stores {state_stores!r}; expected one of {', '.join(self.STATE_STORES)}")
        options.state_stores = self.STATE_STORES[state_stores]
        _lib.check(lib.linattn_context_create(ctypes.byref(options), ctypes.byref(self._handle)))
        self._lib = lib

    @property
    def handle(self) -> ctypes.c_void_p:
        if self._closed or not self._handle:
            raise ValueError("linattn context is closed")
        return self._handle

    @property
    def num_threads(self) -> int:
        return int(self._lib.linattn_context_num_threads(self.handle))

    @property
    def isa(self) -> str:
        """The kernel family this context runs (never "auto": the one auto resolved to)."""
        code = int(self._lib.linattn_context_isa(self.handle))
        return self._lib.linattn_isa_name(code).decode()

    def close(self) -> None:
        """Stops the context (see the class docstring); idempotent, from any thread."""
        with self._close_lock:
            if self._handle and not self._closed:
                self._closed = True
                self._lib.linattn_context_close(self._handle)

    def _destroy(self) -> None:
        # Only from __del__: no other thread can hold this Context, so none can be in a call.
        if self._handle:
            handle, self._handle = self._handle, ctypes.c_void_p()
            self._lib.linattn_context_destroy(handle)

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._destroy()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass

    def __repr__(self) -> str:
        if self._closed or not self._handle:
            return "Context(closed)"
        return f"Context(threads={self.num_threads}, isa={self.isa!r})"


_shared_lock = threading.Lock()
_shared: dict[int, Context] = {}


def shared_context(threads: int | None = None) -> Context:
    """The process-wide context for `threads` (None = all CPUs), created on first use."""
    key = 0 if threads is None else int(threads)
    ctx = _shared.get(key)
    if ctx is None:
        with _shared_lock:
            ctx = _shared.get(key)
            if ctx is None:
                ctx = Context(threads=key)
                _shared[key] = ctx
    return ctx
