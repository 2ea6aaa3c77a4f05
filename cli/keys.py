"""marl-keys: Ed25519 key pairs for signed bundles, and signing an existing bundle (docs/export.md, "Signed bundles");
shared keys for the authenticated UDP robot link (docs/robots.md, "An authenticated link")."""

from __future__ import annotations

from pathlib import Path

import click

from .common import debug_option, emit_json, run_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def keys_cmd():
    """Keys for signed bundles. The private key stays on the build workstation
    (marl-export --sign-key KEY); robots hold only KEY.pub (--trusted-key KEY.pub
    on marl-agent, marl-swarm and marl-eval). Needs marl-edge[crypto].
    `marl-keys link OUT` writes a shared key for the UDP robot link (stdlib only)."""


@keys_cmd.command("link")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@debug_option
def link_cmd(out, force, debug):
    """Write a new shared key for the UDP robot link: OUT, 32 random bytes as
    64 hex digits, mode 0600. Copy it (privately) to the bridge and the robots:
    python -m marl_edge.runtime.udp_world ... --link-key OUT, marl-agent ... --robot udp://HOST:PORT --link-key OUT."""
    from ..runtime.bundle import BundleError
    from ..wire.udp import UdpLinkError, write_link_key

    try:
        path = write_link_key(out, force=force)
    except UdpLinkError as e:
        raise BundleError(str(e)) from None
    except OSError as e:
        raise BundleError(f"{out}: cannot write it ({e.strerror or e})") from None
    click.echo(f"link key {path} (mode 0600): copy it to the bridge and every robot; --link-key {Path(path).name}")
    return 0


@keys_cmd.command("signing")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace OUT and OUT.pub if they exist.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def signing_cmd(out, force, as_json, debug):
    """Write a new Ed25519 signing key: OUT (private, PKCS#8 PEM, mode 0600)
    and OUT.pub (public, PEM, for the robots)."""
    from ..runtime.signing import generate_signing_key

    priv, pub, kid = generate_signing_key(out, force=force)
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    say(f"private  {priv} (mode 0600): keep it on the build workstation; marl-export RUN --out BUNDLE --sign-key {priv}")
    say(f"public   {pub}: copy it to the robots; marl-agent ... --trusted-key {pub.name}")
    say(f"key id   {kid}")
    if as_json:
        emit_json({"private": str(priv), "public": str(pub), "key_id": kid})
    return 0


@keys_cmd.command("sign")
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--key", "key", type=click.Path(path_type=Path), required=True, help="The Ed25519 private key (marl-keys signing OUT).")
@debug_option
def sign_cmd(bundle_dir, key, debug):
    """Sign an existing bundle: check every file against its swarm.json, then
    write swarm.json.sig (replacing an older signature)."""
    from ..runtime.signing import SIGNATURE, sign_bundle

    sig = sign_bundle(bundle_dir, key)
    click.echo(f"signed   {Path(bundle_dir) / SIGNATURE} with key {sig['key_id']}")
    return 0


@keys_cmd.command("id")
@click.argument("key_file", type=click.Path(path_type=Path))
@debug_option
def id_cmd(key_file, debug):
    """Print the key id of a public key file (or of a signing key's public half)."""
    from ..runtime.signing import key_id, load_private_key, load_public_key

    head = key_file.read_bytes()[:200] if key_file.is_file() else b""
    key = load_private_key(key_file).public_key() if b"PRIVATE KEY" in head else load_public_key(key_file)
    click.echo(key_id(key))
    return 0


def main() -> None:
    run_command(keys_cmd, prog_name="marl-keys")


if __name__ == "__main__":
    main()
