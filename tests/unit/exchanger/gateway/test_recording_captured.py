"""Real bytes: what the real kubectl (v1.37.2) and the real kube-apiserver (proxying to the
stand-in kubelet, tests/support/kubelet.py, built on the kubelet's own streaming library) sent
through the real gateway, captured at the tap seam with the proxy's own chunk boundaries, over
kubectl's default WebSocket transport and over SPDY (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false,
KUBECTL_PORT_FORWARD_WEBSOCKETS=false):
- `kubectl exec -it shell -- /bin/sh` on a 101x33 terminal, typing
  `echo hel''lo\r`, `ls /nonexist` then nine DELs and `dev | head -3\r`, and `exit\r`;
- `kubectl port-forward pod/shell LOCAL:PORT` carrying "ping" to a local echo server that
  answers "echo:ping".
Each capture is zlib + base64 of: the request path and the 101's headers (each a 32-bit
length, then the bytes), then records `C|U` (from the client or upstream), `>dI` (time,
length), bytes. No credential crosses the tunnel; the HTTP heads are not in it.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import pytest

from exchanger.gateway.recording.asciicast import read_raw
from exchanger.gateway.recording.replay import commands_typed, read_cast, session_casts
from exchanger.gateway.recording.taps import RecordingTaps
from exchanger.gateway.session import GatewaySession

SESSION = GatewaySession(id="s-captured", cluster="test", user="ci:octo-org/web",
                         groups=("kubegate:deployers",), mapping="web-gateway",
                         access_request="", subject="github repo:octo-org/web",
                         not_after=2e9)
Record = tuple[bool, float, bytes]


def _capture(*parts: str) -> bytes:
    return zlib.decompress(base64.b64decode("".join(parts)))


WEBSOCKET_EXEC_TTY = _capture(
    "eNp1Uc1rE0EU321aqGtyCD0IXpxs2gTFZN3WfLA2aChVVKLSpEqPk9lxd8xmJ87MJo01ClsP3rzYU8Ve/Qu8eFEsiFih"
    "oCDYmycvQtGjCE6T1YMgzMeb9/t4w3uKotw2YIcYXdPwYRvzDkSYG04vZ5cL5uniKdPoUJsb3MWeZ+BVjM4i2m5D367M"
    "zJ5vEl+e3M0g6gtIfMwqbXlluLCJXxEswAchDcQoFqI/DBRFWV/uOAza2AI93OQUtbDQFqjvYyQI9S0QwVodo9wN3KwP"
    "GbkqQrgjLHB9ZfYqazl3qjWz7Mw1SoWSU3QYhS5brPwjucaooIh6FugW8siFsoSXb5V5ntCF6ufto9/117fkf1LhZvc4"
    "6rOlav5Y7UiyMbV08cJE1Zw6N54cO7xyabFBlkfsD1SyY6GqRu+9E/I9EcbUaRD5ffkpM/Ph8301+WzfZi+3Uv33TzLF"
    "7a34YG83f//NU5u8Wg/8T4/uDffORs/8uEvE28ep+c1fEnsQj6y/vZNGtfCyipFLgRxANuvRhOZxYPjUx6uEi0kw+b9l"
    "4y64K1XQBrm5hCbpIqFFzj9eSOd4qKkHU5WW02AEpA/tSKAUFlSPWwDJZlEBoGw65yArDbMWuEIBD5ALbhIPA8qATZic"
    "GWX9P+ZpUPzbkShzJiczM2E6tqa3sYA2FFC31gYndS6gCLhu6fVgWEQfRIrKhlSMPxyLff0NxK7j+w==")

SPDY_EXEC_TTY = _capture(
    "eNp1lVtoFFcYx9d4S0ejVcRLQHscYmJLdmdv8TIQRJKqWCKZrDEXNjWTmbOZ0d05ceZsTEgktrQU0lwXxVqKSF70RUF9"
    "KKFQ7WICtkVf+tSioiK++NKCBWklntk9R/ccdNnL/H97zv/7/rMz3wYCgROK3mcr/RHF0TPQ69MN6Cm9J4OpcLwumjLj"
    "Sh8yPcWzYDqtwAFo7DFQJqM7Zv226L4e2yHvnlVtIAfrtgPd+gz5qPawaTv12M1C/xBlcfEY48HCQSAQ6G9AjgMNbCNH"
    "Ba19va5uQol+qiDR3NihxEIRqT2YwC7UM8FmF2FkoHTwCHS9wqb+eMiwdGKSDh3f5YVsJDXqmOxtg2YtCEdBIzRANBzd"
    "ASK71XBcje0E+5sON+z983bl383xYdJC2enFVO687svAIip3bSJyCXl9zMAwBW9W/ExBgIFX/rdM7a7j1ChRHw28fDJ/"
    "Kd/T3d295NKN3Mwft5OWlv9ekizfZWGhtbj2s8vFxqhsWlRorIzJTlp2HQMLrDEKDl0l4sO3tYrmtBHtApe6ReNSt5yn"
    "XhsYeEAB25CoElInkqU5EzlOPSKqIh9qTeZy55eXZmyb5TK2j3AZ2+/SIisp6NjM2mDgJyLKy3QuWzLOZUve57J1bace"
    "mxjIUrCUgStCtq6npWk+r+XUSaJW5z+ZO0LCHe0sK02nr+XS6XkuXc8yIV2Pxhph4Nw70pk3uXRQ59LBy9RjIwPPKVhO"
    "QSokpEsZpXlSFzn1jKhV+VDbmc4fOs5KpeEy67hwmRkuXOaxEM4ZYn0wcOcd4dw6oVtvBQWVFGD/hqwckttsE1uyGglH"
    "auUD0O61sKzGYqck6v7jFuFczjLAOpwt3F5VgPre3C9c4bfWU1DHwKAvoGEhQAZgTU0aVaQ9oDjIgQO2h0fYw4T9YJgs"
    "0U0QjFWQ73AFLTm3VWhq7ncKDlIwP+YLroZUWqQclL/vyZeVCnXZ2fh1r1D4N4mCDxi45gt/sJOKVaBINXCf36fJX1AQ"
    "Z+A/X6Q9FRhk/iIMdIP8Z3ighrRTo4JDCHhZwwIpOw0BcoFpu2TQI3eQtaZ9+b9Q4qt/+B9K+/pY8YeicnSMn3Pa6Et+"
    "EmrfNvhiSPawjrOerMqJbKEp+RRb8KL00tXGIoVL942E1K+cgRmh4thDoefxbzjD8V84w/F/BcOJCD/GtInjguHEX5zh"
    "5BrOcPJTwXDyhrB/8okApg5yhlMjnOHUVcFw6hV/t2rTEcFw+jvOcPpewZAtzy0VDHN7BMPcCTaGXgOw6pdC")

WEBSOCKET_PORTFORWARD = _capture(
    "eNpjYGAw1U8syNQvM9TPS8xNLS5ITE4t1k8v102xMDU0MTMw1C/ITynWL85IzckBMotK0vKLyhOLUhgYGHpDC9KLElNS"
    "rRTKU5OK85OzU0u4nPPz8lKTSzLz86wUoNJcwanJuuGpScFgFbqOycmpBSVWCpUuoa6OYQXBOblZVf7OQUWOWYHl5e5F"
    "lcVV2bZoWgKK8kvyk/NzrBSCA1wi9Y31DLWRXKKXbVGsl5nv7HjriNQng00/gC7jaGry0hI4fkoTKnjmHURQ1mCpmqwh"
    "VPBCDFCQq6llh5SQFBBHQYWvT4UI525pFAJiYajw7WaI8KurQVdBGCr8oBwozN7UaL3T9ZQ1VOzxDYjYlkel/FugYk9n"
    "AMVsmrbx+77kL9/CdXJF/2stU9vLKmrsSw53RZ9ZvOxtZqd025r12o3NybkqDQfP92qGcR/Rc47f3m8N0vNhUyjYIEOO"
    "HUCDWJqYGpihAlxXIAIMTFABbkegAFsTC5AUgQntgAsxQoV4xIEcoSaBip+Pjy0/lJSQkADkM/z/D3GvofA1iHe1MnVM"
    "gdgEKiyeABEu1t1mXwTEUGHpm2DzG86pRi2BCsncgAT53o+G8rafoIJyMRDBTZf/n910CSoovwBiJovI71wgLoQKK3pC"
    "hB07YkC4HSqs9Bwi/M2mQBWEocIqtpAwFyte2ioGFVNzgohV3pi3qBIqpqECFJNomvT1oPi8cu2LXRu+SJw6+KS07ROQ"
    "z2UHDRu32Whh7GmCFsZe/PAA5YEJrYELwbR5W4HdysGUiBK2vnshXuhI3aALxHpQYT+oz/pq8q4BMSx4/AsgwueMP/3Y"
    "FzVnPtTsCHEM6yIN4UKcMKH5QA53E2dqcka+VUFmXjpUPOoNhu7oQIgQI5CCCsXEYiSbmKsIVVAHxnZBHLhhn5IqEKtB"
    "heO9IcI6By6r6wIxVDjBEpJUdCJ2ykLMDOy+BwrdDibmFwDfBqEL")

SPDY_PORTFORWARD = _capture(
    "eNpjYGAw1U8syNQvM9TPS8xNLS5ITE4t1k8v100zMDE1Sksx0S/ITynWL85IzckBMotK0vKLyhOLUhgYGMqd8/PyUpNL"
    "MvPzrBRCC9KLElNSuaC0lUJwgEukvrGeIVeEbnBJUWpirm5AUX5JfnJ+jm5YalExWBOSeXrZFsV6mflcLoklQM3hqSk6"
    "CgZGCi6pyQpGBkZmCoaWVgYmVsbmCu6+Ic6Ot45IfYx3sgC6gamBGcp1bQJxGRhh3M9ALgsQ20MF3JKgAjAVbsugAgww"
    "gUcgWRjPXQaFVw/kmVb8fHxs+SEmVasCK21NL98zrWKqa1YuaGgTOe26QOVMVlJSCo9Wq0W3wscZnF73e9hAZv//Hwox"
    "Ies1xLlQbq4J2LlMMO5cqGNEYAJ/YM6FCuQtB3IEIC5ISkhIgBgOdV6hEZrnCr+ABBgRnitehhJaxc9RQqtEGqpfAiYQ"
    "BxWAaSiZhRZaJTeQw6dUCoUHch3foVXSIQKqQgslkYOh5jtKMNR5ogRD3QOoLTxQgfo6mDtgAleAHA6mRBTvt7iiubbl"
    "BFSABSrQCvZgQWZeOtSc3hNoBk+1ggpwQgWmBYM4qckZ+VZI+qZfRNM3QxoW0jCBlWgxN+MDWlzMjkGJi9lHwGEA5/6H"
    "6ueACsxxRPPdnHaoACsAuY8uFg==")


def parse(capture: bytes) -> tuple[str, list[tuple[str, str]], list[Record]]:
    (length,) = struct.unpack_from(">I", capture)
    path, at = capture[4:4 + length].decode(), 4 + length
    (length,) = struct.unpack_from(">I", capture, at)
    head = capture[at + 4:at + 4 + length].decode()
    headers = [(name, value) for name, _, value in
               (line.partition(": ") for line in head.splitlines())]
    at += 4 + length
    records: list[Record] = []
    while at < len(capture):
        way, (when, size) = capture[at:at + 1], struct.unpack_from(">dI", capture, at + 1)
        at += 13
        records.append((way == b"C", when, capture[at:at + size]))
        at += size
    return path, headers, records


def replay(root: Path, capture: bytes, *, bytewise: bool = False) -> Path:
    """Feed a capture to a fresh tap as the proxy did (or one byte at a time)."""
    path, headers, records = parse(capture)
    started = records[0][1]
    tap = RecordingTaps(root).open(session=SESSION, method="GET", path=path,
                                   request_headers=[], response_headers=headers,
                                   started=started)
    assert tap is not None
    for from_client, when, data in records:
        feed = tap.from_client if from_client else tap.from_upstream
        for piece in ([data[i:i + 1] for i in range(len(data))] if bytewise else [data]):
            feed(piece, when)
    tap.close(records[-1][1] + 0.1)
    [cast] = session_casts(root, SESSION.id)
    return cast


@pytest.mark.parametrize("capture", [WEBSOCKET_EXEC_TTY, SPDY_EXEC_TTY],
                         ids=["websocket-v5", "spdy"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["as-captured", "byte-by-byte"])
def test_a_real_kubectl_exec_tty_is_recorded(tmp_path: Path, capture: bytes,
                                             bytewise: bool) -> None:
    path = replay(tmp_path, capture, bytewise=bytewise)
    cast = read_cast(path)
    assert (cast.header["width"], cast.header["height"]) == (101, 33)
    assert [c.text for c in commands_typed(cast)] == ["echo hel''lo", "ls dev | head -3",
                                                      "exit"]
    output = "".join(text for _, code, text in cast.events if code == "o")
    assert "\r\nhello\r\n" in output and output.startswith("$ ")
    assert not any(text.startswith("recording stopped") for _, _, text in cast.events)
    statuses = [text for _, code, text in cast.events if text.startswith("status: ")]
    assert len(statuses) == 1 and '"status":"Success"}' in statuses[0]  # the exit, whole
    _, _, records = parse(capture)
    raw = read_raw(Path(str(path) + ".raw").read_bytes())
    typed = b"".join(data for _, kind, data in raw if kind == "stdin")
    assert typed == (b"echo hel''lo\rls /nonexist" + b"\x7f" * 9 + b"dev | head -3\rexit\r")


@pytest.mark.parametrize("capture", [WEBSOCKET_PORTFORWARD, SPDY_PORTFORWARD],
                         ids=["spdy-in-websocket", "spdy"])
def test_a_real_kubectl_port_forward_is_recorded_as_metadata(tmp_path: Path,
                                                            capture: bytes) -> None:
    cast = read_cast(replay(tmp_path, capture, bytewise=True))
    markers = [text for _, code, text in cast.events if code == "m"]
    assert any(m.endswith(": 4 bytes from the client, 9 bytes from the pod") for m in markers)
    assert not any(m.startswith("recording stopped") for m in markers)
    assert b"ping" not in cast.path.read_bytes()
