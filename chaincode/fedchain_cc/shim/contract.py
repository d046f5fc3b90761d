"""A small base class for contracts: named transaction methods, argument checks, JSON results.

Usage::

    from fedchain_cc.shim.contract import Contract, ContractError, transaction

    class Counter(Contract):
        @transaction
        def inc(self, stub, key: str) -> dict:          # invoked as ["inc", "<key>"]
            n = int(stub.get_state(key) or b"0") + 1
            stub.put_state(key, str(n).encode())
            return {"key": key, "value": n}              # -> canonical JSON payload

        @transaction("Get")                              # explicit transaction name
        def get(self, stub, key: str) -> bytes:
            if not (value := stub.get_state(key)):
                raise ContractError(f"no key {key!r}", status=404)
            return value

Rules (why: a client must always get a clear, bounded answer, and a bug must not leak internals):
- The first argument is the transaction name; the rest are passed as `str` parameters
  (UTF-8 decoded; use `stub.get_args()` for raw bytes). The number of parameters is checked
  against the method signature (defaults and `*args` allowed); a mismatch is a 400 error.
- Unknown transaction name -> 400 error listing the known names.
- Return value: None -> empty payload, bytes -> as is, str -> UTF-8, anything else -> canonical
  JSON (sorted keys, compact separators), so every endorser produces identical bytes.
- `raise ContractError(msg, status=4xx)` -> error Response with exactly that message.
- Any other exception -> status 500 "<tx>: internal error: <Type>: <message>"; the traceback is
  logged on the chaincode side only and never sent to the client.
- `init` (Fabric's --init-required call) dispatches like `invoke` when it carries a function
  name and succeeds with an empty payload otherwise.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, overload

from fedchain_cc.shim.interface import Chaincode, ChaincodeStubAPI, Response, error, success

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_TX_ATTR = "__fedchain_transaction__"


class ContractError(Exception):
    """A refusal the client should see verbatim (bad input, not allowed, wrong state)."""

    def __init__(self, message: str, status: int = 400) -> None:
        if not 400 <= status < 600:
            raise ValueError(f"ContractError status must be 4xx/5xx, got {status}")
        super().__init__(message)
        self.message = message
        self.status = status


@overload
def transaction(fn: F) -> F: ...
@overload
def transaction(name: str) -> Callable[[F], F]: ...


def transaction(fn_or_name: Any) -> Any:
    """Mark a method as a transaction; `@transaction` uses the method name, `@transaction("X")` X."""
    if isinstance(fn_or_name, str):
        name = fn_or_name

        def mark(fn: F) -> F:
            setattr(fn, _TX_ATTR, name)
            return fn

        return mark
    setattr(fn_or_name, _TX_ATTR, fn_or_name.__name__)
    return fn_or_name


class _Tx:
    """A registered transaction: the unbound method and its accepted parameter counts."""

    def __init__(self, name: str, method: Callable[..., Any]) -> None:
        self.name = name
        self.method = method
        params = list(inspect.signature(method).parameters.values())[2:]  # drop self, stub
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.min_args = sum(1 for p in positional if p.default is p.empty)
        self.max_args: int | None = (
            None if any(p.kind == p.VAR_POSITIONAL for p in params) else len(positional)
        )
        self.param_names = [p.name for p in positional]

    def check_arity(self, n: int) -> None:
        if n < self.min_args or (self.max_args is not None and n > self.max_args):
            if self.max_args is None:
                want = f"at least {self.min_args}"
            elif self.min_args == self.max_args:
                want = str(self.min_args)
            else:
                want = f"{self.min_args} to {self.max_args}"
            names = ", ".join(self.param_names)
            raise ContractError(f"{self.name} expects {want} argument(s) ({names}), got {n}")


def encode_result(result: Any) -> bytes:
    """The payload bytes for a transaction's return value (see the module docstring)."""
    if result is None:
        return b""
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    return json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Contract(Chaincode):
    """Base class: subclasses mark methods with @transaction; invoke dispatches on the name."""

    transactions: ClassVar[dict[str, _Tx]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, _Tx] = {}
        for klass in reversed(cls.__mro__):  # subclasses override inherited names
            for attr, value in vars(klass).items():
                name = getattr(value, _TX_ATTR, None)
                if name is not None:
                    found[name] = _Tx(name, getattr(cls, attr))
        cls.transactions = found

    def invoke(self, stub: ChaincodeStubAPI) -> Response:
        return self._dispatch(stub)

    def init(self, stub: ChaincodeStubAPI) -> Response:
        return self._dispatch(stub) if stub.get_args() else success()

    def _dispatch(self, stub: ChaincodeStubAPI) -> Response:
        fn, params = stub.get_function_and_parameters()
        tx = self.transactions.get(fn)
        if tx is None:
            known = ", ".join(sorted(self.transactions)) or "(none)"
            return error(f"unknown transaction {fn[:64]!r}; this contract has: {known}", 400)
        try:
            tx.check_arity(len(params))
            return success(encode_result(tx.method(self, stub, *params)))
        except ContractError as exc:
            return error(exc.message, exc.status)
        except Exception as exc:  # a bug must answer, not hang or leak a traceback to the client
            log.exception("transaction %s failed", fn)
            return error(f"{fn}: internal error: {type(exc).__name__}: {exc}", 500)
