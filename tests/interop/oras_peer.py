"""An independent client for Airlock's plugin artifacts in an OCI registry.

Written with the ORAS project's Python SDK (`oras`, pinned in scripts/test.sh), never with
Airlock's code, so that the tests can check both ways that what Airlock publishes is what another
OCI client reads, and what another client publishes is what Airlock pulls. Run by the tests
through `airlock_tests::oras_peer`, in the tests' Python (AIRLOCK_TEST_PYTHON).

    oras_peer.py push REGISTRY/REPO:TAG --library FILE [--signature FILE.minisig]
                      --config PLUGIN.json [--annotation KEY=VALUE ...]
    oras_peer.py push-index REGISTRY/REPO:TAG --platform TRIPLE=TAG_OR_DIGEST ...
    oras_peer.py pull REGISTRY/REPO:TAG --out DIR [--target TRIPLE]

Every command also takes `--username U --password P` for a registry with basic authentication.
The registry is spoken to over plain HTTP (the tests' registries listen on 127.0.0.1). Each
command prints one JSON object on standard output; on failure it prints what failed on standard
error and exits with status 1.

Airlock's layout (v1): an OCI image manifest with artifactType `application/vnd.airlock.plugin.v1`,
its config the plugin's plugin.json (`application/vnd.airlock.plugin.config.v1+json`), a library
layer and, when signed, a minisign signature layer, each titled with its file name
(`org.opencontainers.image.title`); several platforms are an image index whose entries carry the
target triple in the annotation `dev.airlock.plugin.target`.
"""

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile

import oras.container
import oras.defaults
import oras.provider

ARTIFACT_TYPE = "application/vnd.airlock.plugin.v1"
CONFIG_TYPE = "application/vnd.airlock.plugin.config.v1+json"
LIBRARY_TYPE = "application/vnd.airlock.plugin.library.v1"
SIGNATURE_TYPE = "application/vnd.airlock.plugin.signature.v1"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
TARGET_ANNOTATION = "dev.airlock.plugin.target"
TITLE_ANNOTATION = "org.opencontainers.image.title"


class PeerError(Exception):
    """A failure this peer names: the message says what was wrong."""


class AirlockRegistry(oras.provider.Registry):
    """oras-py's registry client, adding `artifactType` to the manifest its `push` uploads.

    `Registry.push` (oras 0.2.43) takes a media type for the config (`manifest_config`) and for
    each file, and the manifest's annotations, but has no artifact type: the manifest it builds is
    handed to `upload_manifest`, which this class extends by that one field. Everything else
    (blob uploads, the manifest's shape, the layers' titles) is the SDK's own.

    Its requests are not retried: the SDK retries a failed connection five times over two
    minutes, and a test that stopped its registry wants the failure now.
    """

    def __init__(self, args, artifact_type=None):
        # The tests' registries ask for no authentication or for basic authentication, never
        # for the bearer tokens the SDK's default backend fetches: its basic backend answers.
        super().__init__(insecure=True, auth_backend="basic")
        if args.username is not None:
            self.auth.set_basic_auth(args.username, args.password or "")
        self.artifact_type = artifact_type
        self.uploaded = None

    def do_request(self, *args, **kwargs):
        try:
            return oras.provider.Registry.do_request.__wrapped__(self, *args, **kwargs)
        except AttributeError as e:
            # The basic backend answers a challenge with credentials it was never given.
            if "_basic_auth" not in str(e):
                raise
            raise PeerError("the registry asks for authentication: give --username and "
                            "--password") from e

    def upload_manifest(self, manifest, container):
        if self.artifact_type:
            manifest = dict(manifest, artifactType=self.artifact_type)
        response = super().upload_manifest(manifest, container)
        self.uploaded = (manifest, response)
        return response


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest(), os.path.getsize(path)


def parse_annotations(pairs):
    annotations = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PeerError(f"--annotation {pair!r} is not KEY=VALUE")
        annotations[key] = value
    return annotations


def push(args):
    """Pushes one platform's artifact the way ORAS pushes files, in Airlock's layout."""
    annotations = parse_annotations(args.annotation)
    for path in [args.library, args.config] + ([args.signature] if args.signature else []):
        if not os.path.isfile(path):
            raise PeerError(f"{path} is not a file")
    try:
        json.load(open(args.config, "rb"))
    except ValueError as e:
        raise PeerError(f"{args.config} is not JSON: {e}") from e
    library_name = os.path.basename(args.library)
    with tempfile.TemporaryDirectory(prefix="oras-peer-") as staging:
        # ORAS titles each layer with its file's name: the files are pushed from copies named
        # as Airlock names them (the signature is `<library>.minisig` whatever it was called).
        files = [(args.library, library_name, LIBRARY_TYPE)]
        if args.signature:
            files.append((args.signature, library_name + ".minisig", SIGNATURE_TYPE))
        staged = []
        for source, name, media_type in files:
            copy = os.path.join(staging, name)
            shutil.copyfile(source, copy)
            staged.append(f"{copy}:{media_type}")
        config = os.path.join(staging, "config.json")
        shutil.copyfile(args.config, config)
        registry = AirlockRegistry(args, artifact_type=ARTIFACT_TYPE)
        registry.push(
            target=args.reference,
            files=staged,
            manifest_config=f"{config}:{CONFIG_TYPE}",
            manifest_annotations=annotations,
            disable_path_validation=True,
            quiet=True,
        )
    manifest, response = registry.uploaded
    body = response.request.body
    digest = sha256_digest(body if isinstance(body, bytes) else body.encode())
    said = response.headers.get("Docker-Content-Digest")
    if said and said != digest:
        raise PeerError(f"the registry says the manifest is {said}, its bytes hash to {digest}")
    return {"manifest_digest": digest, "manifest": manifest}


# Target triples' first and operating-system parts, as OCI platforms name them.
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "riscv64gc": "riscv64",
                 "armv7": "arm", "powerpc64le": "ppc64le", "s390x": "s390x"}
OPERATING_SYSTEMS = {"linux": "linux", "darwin": "darwin", "windows": "windows",
                     "freebsd": "freebsd"}


def platform_of(triple):
    parts = triple.split("-")
    arch = ARCHITECTURES.get(parts[0])
    system = next((OPERATING_SYSTEMS[p] for p in parts[1:] if p in OPERATING_SYSTEMS), None)
    if not arch or not system:
        raise PeerError(f"no OCI platform for the target {triple!r}")
    return {"os": system, "architecture": arch}


def push_index(args):
    """Pushes an image index over manifests already in the repository, one per target.

    The SDK's `upload_manifest` sends only image manifests (its content type and schema are
    fixed), so the index goes through the SDK's request call with the index's content type.
    """
    registry = AirlockRegistry(args)
    container = registry.get_container(args.reference)
    registry.auth.load_configs(container)
    entries = []
    for pair in args.platform:
        target, sep, ref = pair.partition("=")
        if not sep or not target or not ref:
            raise PeerError(f"--platform {pair!r} is not TRIPLE=TAG_OR_DIGEST")
        at = "@" if ref.startswith("sha256:") else ":"
        child = oras.container.Container(f"{container.registry}/{container.api_prefix}{at}{ref}")
        data, manifest, digest = fetch_manifest(registry, child, [MANIFEST_TYPE])
        if manifest.get("artifactType") != ARTIFACT_TYPE:
            raise PeerError(f"{ref} is not an Airlock plugin: artifactType "
                            f"{manifest.get('artifactType')!r}")
        entries.append({"mediaType": MANIFEST_TYPE, "digest": digest, "size": len(data),
                        "platform": platform_of(target),
                        "annotations": {TARGET_ANNOTATION: target}})
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "artifactType": ARTIFACT_TYPE,
             "manifests": entries}
    annotations = parse_annotations(args.annotation)
    if annotations:
        index["annotations"] = annotations
    body = json.dumps(index).encode()
    url = f"{registry.prefix}://{container.manifest_url()}"
    response = registry.do_request(url, "PUT", data=body, headers={"Content-Type": INDEX_TYPE})
    if response.status_code not in (200, 201):
        raise PeerError(f"PUT {url} answered {response.status_code}: {response.text[:300]}")
    return {"manifest_digest": sha256_digest(body), "index": index}


def fetch_manifest(registry, container, accept):
    """The manifest `container` names, its digest checked, as (bytes, parsed, digest)."""
    url = f"{registry.prefix}://{container.manifest_url()}"
    response = registry.do_request(url, "GET", headers={"Accept": ", ".join(accept)})
    if response.status_code != 200:
        raise PeerError(f"GET {url} answered {response.status_code}: {response.text[:300]}")
    data = response.content
    digest = sha256_digest(data)
    said = response.headers.get("Docker-Content-Digest")
    if said and said != digest:
        raise PeerError(f"{url}: the registry says {said}, the bytes hash to {digest}")
    if container.digest and container.digest != digest:
        raise PeerError(f"{url}: asked for {container.digest}, the bytes hash to {digest}")
    try:
        return data, json.loads(data), digest
    except ValueError as e:
        raise PeerError(f"{url} is not JSON: {e}") from e


def pick_platform(registry, container, index, target):
    """The manifest of the index entry for `target`, checked against the entry's descriptor."""
    if index.get("artifactType") != ARTIFACT_TYPE:
        raise PeerError(f"the index's artifactType is {index.get('artifactType')!r}, "
                        f"not {ARTIFACT_TYPE}")
    entries = index.get("manifests") or []
    targets = [(e.get("annotations") or {}).get(TARGET_ANNOTATION) for e in entries]
    if not target:
        raise PeerError(f"the reference is an index of {targets}: say which with --target")
    chosen = [e for e, t in zip(entries, targets) if t == target]
    if len(chosen) != 1:
        raise PeerError(f"the index has {len(chosen)} entries for {target} (it has {targets})")
    entry = chosen[0]
    child = oras.container.Container(
        f"{container.registry}/{container.api_prefix}@{entry['digest']}")
    data, manifest, digest = fetch_manifest(registry, child, [MANIFEST_TYPE])
    if len(data) != entry.get("size"):
        raise PeerError(f"the manifest for {target} is {len(data)} bytes, "
                        f"the index says {entry.get('size')}")
    return manifest, digest


def safe_title(layer):
    title = (layer.get("annotations") or {}).get(TITLE_ANNOTATION)
    if not title or title in (".", "..") or "/" in title or "\\" in title or "\0" in title:
        raise PeerError(f"layer {layer.get('digest')} has no usable file name: {title!r}")
    return title


def download_checked(registry, container, descriptor, path):
    """Downloads a blob to `path` and checks it against its descriptor; removes it if wrong."""
    registry.download_blob(container, descriptor["digest"], path)
    digest, size = file_digest(path)
    if size != descriptor.get("size") or digest != descriptor.get("digest"):
        os.remove(path)
        raise PeerError(f"blob {descriptor.get('digest')} ({descriptor.get('size')} bytes) "
                        f"arrived as {digest} ({size} bytes)")


def pull(args):
    """Pulls an artifact in Airlock's layout, checking every digest itself."""
    registry = AirlockRegistry(args)
    container = registry.get_container(args.reference)
    registry.auth.load_configs(container)
    _, manifest, digest = fetch_manifest(registry, container, [MANIFEST_TYPE, INDEX_TYPE])
    if manifest.get("mediaType") == INDEX_TYPE:
        manifest, digest = pick_platform(registry, container, manifest, args.target)
    if manifest.get("mediaType") != MANIFEST_TYPE:
        raise PeerError(f"the manifest's mediaType is {manifest.get('mediaType')!r}")
    if manifest.get("artifactType") != ARTIFACT_TYPE:
        raise PeerError(f"the manifest's artifactType is {manifest.get('artifactType')!r}, "
                        f"not {ARTIFACT_TYPE}")
    config = manifest.get("config") or {}
    if config.get("mediaType") != CONFIG_TYPE:
        raise PeerError(f"the config's mediaType is {config.get('mediaType')!r}, not {CONFIG_TYPE}")
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="oras-peer-", dir=args.out) as scratch:
        config_path = os.path.join(scratch, "config")
        download_checked(registry, container, config, config_path)
        with open(config_path, "rb") as f:
            try:
                plugin_json = json.load(f)
            except ValueError as e:
                raise PeerError(f"the config blob is not JSON: {e}") from e
        layers, files = [], []
        for layer in manifest.get("layers") or []:
            if layer.get("mediaType") not in (LIBRARY_TYPE, SIGNATURE_TYPE):
                raise PeerError(f"layer {layer.get('digest')} has mediaType "
                                f"{layer.get('mediaType')!r}")
            title = safe_title(layer)
            partial = os.path.join(scratch, "layer")
            download_checked(registry, container, layer, partial)
            path = os.path.abspath(os.path.join(args.out, title))
            os.replace(partial, path)
            files.append(path)
            layers.append({"title": title, "mediaType": layer["mediaType"],
                           "digest": layer["digest"], "size": layer["size"]})
    if not layers or layers[0]["mediaType"] != LIBRARY_TYPE:
        raise PeerError("the first layer is not the plugin's library")
    return {"manifest_digest": digest, "files": files, "layers": layers,
            "annotations": manifest.get("annotations") or {}, "config": plugin_json}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    login = argparse.ArgumentParser(add_help=False)
    login.add_argument("--username", help="for a registry with basic authentication")
    login.add_argument("--password")
    commands = parser.add_subparsers(dest="command", required=True)
    push_args = commands.add_parser("push", parents=[login],
                                    help="push a plugin in Airlock's layout")
    push_args.add_argument("reference", help="REGISTRY/REPO:TAG")
    push_args.add_argument("--library", required=True)
    push_args.add_argument("--signature")
    push_args.add_argument("--config", required=True, help="the plugin's plugin.json")
    push_args.add_argument("--annotation", action="append", help="KEY=VALUE, on the manifest")
    index_args = commands.add_parser("push-index", parents=[login],
                                     help="push an index over pushed platforms")
    index_args.add_argument("reference", help="REGISTRY/REPO:TAG")
    index_args.add_argument("--platform", action="append", required=True,
                            help="TRIPLE=TAG_OR_DIGEST of a manifest in the same repository")
    index_args.add_argument("--annotation", action="append", help="KEY=VALUE, on the index")
    pull_args = commands.add_parser("pull", parents=[login],
                                    help="pull a plugin in Airlock's layout")
    pull_args.add_argument("reference", help="REGISTRY/REPO:TAG or REGISTRY/REPO@DIGEST")
    pull_args.add_argument("--out", required=True)
    pull_args.add_argument("--target", help="the target triple to pick from an index")
    args = parser.parse_args()
    try:
        # The SDK may print; standard output is this program's answer only.
        with contextlib.redirect_stdout(sys.stderr):
            result = {"push": push, "push-index": push_index, "pull": pull}[args.command](args)
    except PeerError as e:
        print(f"oras_peer {args.command}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the SDK's and the network's failures, said as they are
        print(f"oras_peer {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
