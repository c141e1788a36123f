"""One error root: every exception class that kubegate's own packages define derives from
`KubegateError`, so each carries a transport-neutral code, a stable reason and a public
message, and the gRPC or HTTP status is chosen at the boundary only."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import exchanger
import kubegate
import sidecar
from kubegate.errors import Code, KubegateError


def product_modules() -> list[str]:
    names = []
    for package in (kubegate, exchanger, sidecar):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".v1" not in info.name and not info.name.endswith("__main__"):
                names.append(info.name)
    return names


def test_every_exception_kubegate_defines_has_the_one_root() -> None:
    defined = []
    for name in product_modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                defined.append(value)
    assert len(defined) > 15  # the walk found the errors
    strays = [f"{cls.__module__}.{cls.__qualname__}" for cls in defined
              if not issubclass(cls, KubegateError)]
    assert strays == []


def test_every_code_has_an_http_status_and_a_grpc_status() -> None:
    import grpc

    from exchanger.service import grpc_code

    for code in Code:
        assert 400 <= code.http_status <= 599
        assert isinstance(grpc_code(code), grpc.StatusCode)
        assert grpc_code(code).name == code.name
