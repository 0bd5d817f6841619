"""A local web page to try models: pick a model, a class, how many, temperature, guidance and seed, and see (and
for sounds hear) what it generates; or upload an image or a recording and see it completed.

    python -m pipelines.demo                                   # every pretrained model (vqvae_prior.pretrained)
    python -m pipelines.demo --vqvae runs/mnist/vqvae.pt --prior runs/mnist-prior/prior.pt --port 8001

Serves http://127.0.0.1:8000/ by default, bound to this machine only (``--host 0.0.0.0`` opens it to the network:
there is no login). Each ``--vqvae``/``--prior`` pair is one model, as is each ``--pretrained`` name; with neither,
the page offers every pretrained model. Models are loaded and checked once, at start.

Generated images are shown as PNGs; an audio model's samples as spectrogram pictures, each beside a player of its
Griffin-Lim waveform (WAV). Completion keeps the top ``keep rows`` rows of the upload's code map (for audio, the
first frames) and samples the rest ``count`` times, as ``pipelines.generate --complete`` does. A bad value, an
unknown class, or an upload of the wrong kind or size is answered on the page in one line; the server goes on.
Both are thin wrappers over :class:`vqvae_prior.VQPriorPipeline` and its modality, which reads the uploads and
writes the pictures and sounds. One request is computed at a time.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import torch

from pipelines import cli
from vqvae_prior import pretrained
from vqvae_prior.checks import SEEDS, whole_number
from vqvae_prior.errors import UsageError, VQPriorError
from vqvae_prior.pipeline import VQPriorPipeline, seeded

MAX_COUNT = 16  # samples (or completions) one request makes: a page of pictures, seconds on a CPU
MAX_UPLOAD = 5_000_000  # bytes of one request: an image or a clip of a few seconds, with room to spare
PICTURE_HEIGHT = 112  # pixels a picture is drawn at (28 x 28 digits 4 times, pixelated)


@dataclass
class Request:
    """What the page's form asks for, checked (:func:`read_form`)."""

    model: str
    label: str | None
    count: int
    temperature: float | None  # None: the model's default
    guidance: float
    seed: int | None
    action: str = "generate"
    keep_rows: int | None = None
    upload: tuple[str, bytes] | None = None  # the file's name and bytes


@dataclass
class Shown:
    """What the page shows of a request: captioned pictures (PNG bytes), each with a WAV of an audio model."""

    pictures: list[tuple[bytes, str]] = field(default_factory=list)
    sounds: list[bytes | None] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- the form


def number(fields: dict[str, str], name: str, default: float | int | None, whole: bool, low: float,
           high: float | None = None) -> float | int | None:
    """The form field ``name`` as a number in ``low`` .. ``high`` (``default`` when blank); a one-line
    :class:`UsageError` naming the field otherwise."""
    text = fields.get(name, "").strip()
    if not text:
        return default
    label = name.replace("_", " ")
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise UsageError(f"{label}: expected {'a whole number' if whole else 'a number'}, got {text!r:.40}") from None
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        shown = (lambda v: str(int(v))) if whole else (lambda v: f"{v:g}")  # noqa: E731
        bounds = f"in {shown(low)} .. {shown(high)}" if high is not None else f">= {shown(low)}"
        raise UsageError(f"{label}: expected {'a whole number' if whole else 'a number'} {bounds}, got {text:.40}")
    return value


def read_form(fields: dict[str, str], upload: tuple[str, bytes] | None, models: dict[str, VQPriorPipeline]) -> Request:
    """The checked request of a submitted form; the first wrong field is refused in one line naming it."""
    model = fields.get("model", "")
    if model not in models:
        raise UsageError(f"model: {model!r:.60} is not one of {', '.join(models)}")
    pipe = models[model]
    label = fields.get("label") or None
    if pipe.prior.config.num_classes and label not in pipe.label_names:
        raise UsageError(f"class: {label!r:.40} is not a class of {model} ({', '.join(pipe.label_names)})")
    if not pipe.prior.config.num_classes and label is not None:
        raise UsageError(f"class: {model} is unconditional; leave the class empty")
    action = fields.get("action", "generate")
    if action not in ("generate", "complete"):
        raise UsageError(f"action: expected generate or complete, got {action!r:.40}")
    request = Request(
        model, label,
        count=number(fields, "count", 8, True, 1, MAX_COUNT),
        temperature=number(fields, "temperature", None, False, 1e-3),  # blank: the model's default
        guidance=number(fields, "guidance", 0.0, False, 0),
        seed=number(fields, "seed", None, True, *SEEDS),
        action=action,
        keep_rows=number(fields, "keep_rows", None, True, 0, pipe.code_shape[0]),
    )
    if action == "complete":
        noun = f"{'an' if pipe.modality.noun[0] in 'aeiou' else 'a'} {pipe.modality.noun}"
        if upload is None or not upload[1]:
            raise UsageError(f"file: completing needs an uploaded {pipe.modality.noun} "
                             f"({', '.join(pipe.modality.extensions)})")
        if Path(upload[0]).suffix.lower() not in pipe.modality.extensions:
            raise UsageError(f"file {upload[0]!r:.60}: expected {noun} file ({', '.join(pipe.modality.extensions)}) "
                             f"for {model}")
        if request.keep_rows is None:
            raise UsageError(f"keep rows: completing needs the code rows to keep, 0 .. {pipe.code_shape[0]}")
        request.upload = upload
    return request


def parse_body(content_type: str, body: bytes) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """The fields of a submitted form (URL-encoded, or multipart with one file ``file``) and the file's name and
    bytes (None when no file was chosen)."""
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        fields, upload = {}, None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                upload = (Path(part.get_filename()).name, payload) if part.get_filename() else None
            elif name:
                fields[name] = payload.decode("utf-8", "replace")
        return fields, upload
    query = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in query.items()}, None


# ---------------------------------------------------------------------------------------------- the models' work


def show(pipe: VQPriorPipeline, images: torch.Tensor, captions: list[str], waveforms: list[torch.Tensor | None],
         sample_rate: int | None) -> Shown:
    """Pictures of model tensors (N, C, H, W) and WAVs of the waveforms (T,) given (None: no sound), written by the
    pipeline's modality as ``pipelines.generate`` writes them."""
    shown = Shown()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (caption, wave) in enumerate(zip(captions, waveforms)):
            png, wav = Path(tmp, f"{i}.png"), Path(tmp, f"{i}.wav")
            pipe.modality.save_grid(images[i : i + 1], png, 1)  # (1, C, H, W), drawn as the modality draws it
            if wave is not None:
                pipe.modality.write_outputs((wave[None], sample_rate), [wav])  # (1, T)
            shown.pictures.append((png.read_bytes(), caption))
            shown.sounds.append(wav.read_bytes() if wave is not None else None)
    return shown


def generate(pipe: VQPriorPipeline, request: Request) -> Shown:
    """``request.count`` samples of the class asked for."""
    labels = [request.label] * request.count if request.label is not None else None
    out = pipe(request.count, labels, request.temperature, seeded(request.seed, pipe.device),
               guidance=request.guidance)  # out.images (n, C, H, W)
    captions = [f"{request.label or 'sample'} #{i + 1}" for i in range(request.count)]
    waves = list(out.waveforms) if out.waveforms is not None else [None] * request.count  # each (T,)
    return show(pipe, out.images, captions, waves, out.sample_rate)


def complete(pipe: VQPriorPipeline, request: Request) -> Shown:
    """The upload, the part of it kept, and ``request.count`` completions."""
    name, data = request.upload
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "upload" + Path(name).suffix.lower())  # the name a browser sends is not a safe path
        path.write_bytes(data)
        try:
            x = pipe.modality.read(path, pipe.sample_shape)  # (C, H, W) image, or (T,) waveform
        except VQPriorError as e:  # the message names the temporary copy: name the upload
            raise type(e)(f"file {name!r:.60}: {str(e).replace(str(path), 'it')}") from None
    labels = [request.label] if request.label is not None else None
    out = pipe.complete(x[None], request.keep_rows, labels, request.count, request.temperature,
                        seeded(request.seed, pipe.device), guidance=request.guidance)  # out.images (1, S, C, H, W)
    images = torch.cat([out.inputs, out.kept, out.images[0]])  # (2 + S, C, H, W)
    captions = ["upload", f"kept: {out.keep} code rows", *(f"completion {i + 1}" for i in range(request.count))]
    waves = [None] * len(captions)  # images are silent
    if out.waveforms is not None:  # the upload as it was read, no sound of the kept part, the completions
        waves = [x, None, *out.waveforms[0]]  # each (T,)
    return show(pipe, images, captions, waves, out.sample_rate)


# ---------------------------------------------------------------------------------------------- the page


STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}label{margin-right:1em}
input[type=text]{width:4em}p{line-height:2}.error{color:#b00;font-weight:bold}figure{display:inline-block;margin:.4em;text-align:center}
img{height:%dpx;image-rendering:pixelated;border:1px solid #ccc}audio{display:block;width:14em}figcaption{font-size:.8em}""" % PICTURE_HEIGHT


def page(models: dict[str, VQPriorPipeline], fields: dict[str, str], shown: Shown | None, error: str | None) -> str:
    """The page: the form (holding ``fields``), then the one-line error or what was made."""
    e = html.escape
    model = fields.get("model") if fields.get("model") in models else next(iter(models))
    pipe = models[model]
    model_options = "".join(f'<option value="{e(name)}"{" selected" * (name == model)}>{e(name)} '
                            f"({e(m.modality.name)})</option>" for name, m in models.items())
    classes = pipe.label_names if pipe.prior.config.num_classes else []
    class_options = "".join(f'<option{" selected" * (c == fields.get("label"))}>{e(c)}</option>' for c in classes)
    class_options = class_options or '<option value="">none</option>'  # an unconditional prior
    value = lambda name, default="": e(fields.get(name, default))  # noqa: E731

    def text(name: str, label: str, default: str = "", placeholder: str = "") -> str:
        return (f'<label>{label} <input type="text" inputmode="decimal" name="{name}" id="{name}" '
                f'value="{value(name, default)}" placeholder="{placeholder}"></label>')

    # blank draws at the model's default: a number, or one a level (top, bottom), shown once where they agree
    default = pipe.default_temperature
    levels = default if isinstance(default, tuple) else (default,)
    default_temperature = " / ".join(f"{t:g}" for t in dict.fromkeys(levels))
    parts = [
        '<!doctype html><html><head><meta charset="utf-8"><title>vqvae_prior</title>'
        f"<style>{STYLE}</style></head><body><h1>vqvae_prior</h1>",
        '<form method="post" action="/" enctype="multipart/form-data"><p>',
        f'<label>model <select name="model" id="model" onchange="location.search=\'model=\'+'
        f'encodeURIComponent(this.value)">{model_options}</select></label>',
        f'<label>class <select name="label" id="label">{class_options}</select></label>',
        text("count", f"count (1 .. {MAX_COUNT})", "8"),
        text("temperature", "temperature", placeholder=default_temperature),
        text("guidance", "guidance", "0"), text("seed", "seed", placeholder="random"),
        '</p><p><button type="submit" name="action" value="generate" id="generate">Generate</button></p><p>',
        f'<label>complete this {e(pipe.modality.noun)} <input type="file" name="file" id="file" '
        f'accept="{",".join(pipe.modality.extensions)}"></label>',
        text("keep_rows", f"keep rows (0 .. {pipe.code_shape[0]})", str(pipe.code_shape[0] // 2)),
        '<button type="submit" name="action" value="complete" id="complete">Complete</button></p></form>',
    ]
    if error is not None:
        parts.append(f'<p class="error" id="error">{e(error)}</p>')
    if shown is not None:
        parts.append('<div id="results">')
        for (png, caption), wav in zip(shown.pictures, shown.sounds):
            player = ("" if wav is None else
                      f'<audio controls preload="auto" src="data:audio/wav;base64,{base64.b64encode(wav).decode()}">'
                      "</audio>")
            parts.append(f'<figure><img alt="{e(caption)}" src="data:image/png;base64,'
                         f'{base64.b64encode(png).decode()}">{player}<figcaption>{e(caption)}</figcaption></figure>')
        parts.append("</div>")
    parts.append("</body></html>")
    return "".join(parts)


class Handler(BaseHTTPRequestHandler):
    """GET / shows the form (``?model=NAME`` picks the model); POST / makes what it asks for."""

    timeout = 60  # seconds a client may take to send its request, so that none holds a thread for ever
    models: dict[str, VQPriorPipeline]  # set on the subclass that :func:`make_server` makes
    lock: threading.Lock  # one request's models' work at a time: memory stays that of one

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/":
            self.respond(404, f"no page {url.path}; the demo is at /")
            return
        fields = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.respond(200, page(self.models, fields, None, None))

    def do_POST(self) -> None:
        fields: dict[str, str] = {}
        try:
            size = int(self.headers.get("Content-Length") or "x")
            if size < 0:
                raise ValueError(size)
        except ValueError:
            self.close_connection = True
            self.respond(411, page(self.models, fields, None, "the request gave no length (Content-Length >= 0)"))
            return
        if size > MAX_UPLOAD:
            self.close_connection = True  # the body is not read
            self.respond(413, page(self.models, fields, None, f"file: the upload is {size:,} bytes; at most "
                                                              f"{MAX_UPLOAD:,} are taken"))
            return
        fields, upload = parse_body(self.headers.get("Content-Type", ""), self.rfile.read(size))
        try:
            request = read_form(fields, upload, self.models)
            with self.lock:
                work = complete if request.action == "complete" else generate
                shown = work(self.models[request.model], request)
        except VQPriorError as e:
            self.respond(400, page(self.models, fields, None, " ".join(str(e).split())))
            return
        except Exception as e:  # a bug: said in one line, and the server goes on
            self.log_error("%s", f"{type(e).__name__}: {e}")
            self.respond(500, page(self.models, fields, None, f"internal error ({type(e).__name__}: {e})"[:300]))
            return
        self.respond(200, page(self.models, fields, shown, None))

    def respond(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8" if text.startswith("<!") else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:  # quieter than http.server
        if str(getattr(code, "value", code)).startswith("5"):  # bad input is answered on the page; bugs are logged
            super().log_request(code, size)


def make_server(models: dict[str, VQPriorPipeline], host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server of the page over ``models`` (a name -> its pipeline), bound to ``host``:``port`` (0: a free one);
    not yet serving (``serve_forever``). A port in use is refused in one line."""
    handler = type("DemoHandler", (Handler,), {"models": dict(models), "lock": threading.Lock()})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise UsageError(f"--port {port}: cannot serve on {host}:{port} ({e.strerror or e})") from e
    server.daemon_threads = True
    return server


# ---------------------------------------------------------------------------------------------- the command


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--pretrained", nargs="+", metavar="NAME",
                        help="pretrained models to offer (default: all of them, unless --prior is given)")
    parser.add_argument("--vqvae", action="append", help="a VQ-VAE checkpoint; repeat for more models")
    parser.add_argument("--prior", action="append",
                        help="the prior over the codes of the --vqvae given in the same place; repeat for more")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to serve on: 127.0.0.1 is this machine only; 0.0.0.0 every network")
    parser.add_argument("--port", type=int, default=8000, help="the port (0: any free one)")
    cli.add_device(parser)
    return parser


def load_models(args: argparse.Namespace, device: torch.device) -> dict[str, VQPriorPipeline]:
    """The models the page offers, by name: each --pretrained name, each --vqvae/--prior pair by its prior."""
    names = args.pretrained
    if names is None and not args.prior:
        names = list(pretrained.available())
        if not names:
            raise UsageError(f"no models to offer: no pretrained models are in {pretrained.folder()}; give "
                             "--vqvae and --prior checkpoints (or package a model: pipelines.package_model)")
    models = {}
    for name in names or []:
        try:
            models[name] = VQPriorPipeline.from_pretrained(name, device)
        except VQPriorError as e:
            raise type(e)(f"--pretrained {name}: {e}") from None
    for vqvae, prior in zip(args.vqvae, args.prior):
        models[prior] = VQPriorPipeline.from_checkpoints(vqvae, prior, device)
    return models


def main(args: argparse.Namespace) -> None:
    args.vqvae, args.prior = args.vqvae or [], args.prior or []  # each given once per model
    for option in ("vqvae", "prior"):
        for path in getattr(args, option):
            if not Path(path).is_file():
                raise UsageError(f"--{option} {path}: no such file")
    if len(args.vqvae) != len(args.prior):
        raise UsageError(f"--vqvae and --prior go in pairs, one model each: got {len(args.vqvae)} --vqvae and "
                         f"{len(args.prior)} --prior")
    whole_number(args.port, "--port", 0, 65535)
    try:
        socket.getaddrinfo(args.host, args.port)
    except (socket.gaierror, UnicodeError) as e:
        raise UsageError(f"--host {args.host}: not an address or name this machine can resolve ({e})") from None
    device = cli.pick_device(args.device)
    models = load_models(args, device)
    server = make_server(models, args.host, args.port)
    host, port = server.server_address[:2]
    where = "this machine only" if host.startswith("127.") else "every network this machine is on (no login)"
    print(f"serving {len(models)} model(s) at http://{host}:{port}/ (bound to {host}: {where}); Ctrl-C stops it",
          flush=True)
    serve(server)


def serve(server: ThreadingHTTPServer) -> None:
    """Serve until interrupted, then close the socket."""
    with server:
        server.serve_forever()


console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
