"""The contract framework: named transaction methods, argument checks, canonical JSON results.

Every contract of this chaincode (the test chaincode and the FL contract) dispatches through here,
so there is one `transaction` decorator, one `ContractError`, one dispatch and one result encoding.

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
  JSON (`fedchain_cc.canonical`), so every endorser produces identical bytes.
- `raise ContractError(msg, status=4xx)` -> error Response with that message.
- Any other exception -> status 500; the traceback is logged on the chaincode side only and never
  sent to the client.
- `init` (Fabric's --init-required call) dispatches like `invoke` when it carries a function
  name and succeeds with an empty payload otherwise (`init_dispatches = False`: always succeeds
  with an empty payload and runs nothing).

What a contract may adapt (the FL contract does; the defaults are the plain ones above):
- `wording`: the words of the dispatcher's own answers (unknown name, argument count, refusal,
  internal error), so a contract with a published error format keeps it byte for byte.
- `context(stub, fn)`: what each method gets instead of the stub (e.g. a per-transaction view with
  buffered writes and JSON records), and `completed(ctx)`: called only after the method succeeded
  and its result was encoded (e.g. to flush those writes and set the event), never on refusal.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, overload

from fedchain_cc.canonical import canonical_bytes
from fedchain_cc.shim.interface import Chaincode, ChaincodeStubAPI, Response, error, success

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_TX_ATTR = "__fedchain_transaction__"


class ContractError(Exception):
    """A refusal the client should see verbatim (bad input, not allowed, wrong state).

    `status` follows HTTP: 400 bad input, 403 not allowed, 404 missing, 409 wrong state, 500 a ledger
    that is not what the contract wrote (e.g. a corrupted record).
    """

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


@dataclass(frozen=True)
class Wording:
    """The dispatcher's own answers, as `str.format` templates.

    unknown: {fn} (the name, cut to 64 characters), {known} (sorted names, comma-separated);
    arity: {name}, {want} ("2", "1 to 2", "at least 1"), {params} (parameter names), {n};
    refusal: {fn}, {message} (a ContractError's, the arity message included);
    internal: {fn}, {type} (the exception's class name), {error} (its text).
    """

    unknown: str = "unknown transaction {fn!r}; this contract has: {known}"
    arity: str = "{name} expects {want} argument(s) ({params}), got {n}"
    refusal: str = "{message}"
    internal: str = "{fn}: internal error: {type}: {error}"


class TxMethod:
    """A registered transaction: the unbound method and its accepted parameter counts."""

    def __init__(self, name: str, method: Callable[..., Any]) -> None:
        self.name = name
        self.method = method
        params = list(inspect.signature(method).parameters.values())[2:]  # drop self, stub/context
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.min_args = sum(1 for p in positional if p.default is p.empty)
        self.max_args: int | None = (
            None if any(p.kind == p.VAR_POSITIONAL for p in params) else len(positional)
        )
        self.param_names = [p.name for p in positional]

    def check_arity(self, n: int, template: str) -> None:
        if n < self.min_args or (self.max_args is not None and n > self.max_args):
            if self.max_args is None:
                want = f"at least {self.min_args}"
            elif self.min_args == self.max_args:
                want = str(self.min_args)
            else:
                want = f"{self.min_args} to {self.max_args}"
            params = ", ".join(self.param_names)
            raise ContractError(template.format(name=self.name, want=want, params=params, n=n))


def encode_result(result: Any) -> bytes:
    """The payload bytes for a transaction's return value (see the module docstring)."""
    if result is None:
        return b""
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    return canonical_bytes(result)


class Contract(Chaincode):
    """Base class: subclasses (and their mixins) mark methods with @transaction; invoke dispatches on the name."""

    transactions: ClassVar[dict[str, TxMethod]] = {}
    wording: ClassVar[Wording] = Wording()
    init_dispatches: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, TxMethod] = {}
        for klass in reversed(cls.__mro__):  # subclasses override inherited names
            for attr, value in vars(klass).items():
                name = getattr(value, _TX_ATTR, None)
                if name is not None:
                    found[name] = TxMethod(name, getattr(cls, attr))
        cls.transactions = found

    def context(self, stub: ChaincodeStubAPI, fn: str) -> Any:
        """What a transaction method receives after `self`: the stub itself unless a contract says otherwise."""
        return stub

    def completed(self, ctx: Any) -> None:
        """Called once the method succeeded and its result is encoded (never on refusal or error)."""

    def invoke(self, stub: ChaincodeStubAPI) -> Response:
        return self._dispatch(stub)

    def init(self, stub: ChaincodeStubAPI) -> Response:
        return self._dispatch(stub) if self.init_dispatches and stub.get_args() else success()

    def _dispatch(self, stub: ChaincodeStubAPI) -> Response:
        fn, params = stub.get_function_and_parameters()
        tx = self.transactions.get(fn)
        words = self.wording
        if tx is None:
            known = ", ".join(sorted(self.transactions)) or "(none)"
            return error(words.unknown.format(fn=fn[:64], known=known), 400)
        try:
            ctx = self.context(stub, fn)
            tx.check_arity(len(params), words.arity)
            payload = encode_result(tx.method(self, ctx, *params))
        except ContractError as exc:
            return error(words.refusal.format(fn=fn, message=exc.message), exc.status)
        except Exception as exc:  # a bug must answer, not hang or leak a traceback to the client
            log.exception("transaction %s failed", fn)
            return error(words.internal.format(fn=fn, type=type(exc).__name__, error=exc), 500)
        self.completed(ctx)
        return success(payload)
