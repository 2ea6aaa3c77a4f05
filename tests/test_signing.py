"""Signed bundles and confined agent folders (issue 16).

``marl-export --sign-key KEY`` writes ``swarm.json.sig``, an Ed25519 signature
over the exact bytes of ``swarm.json`` (which lists every file's sha256).
Given ``--trusted-key KEY.pub`` the runtime refuses a bundle that is unsigned,
signed by another key, re-hashed after signing, or whose files differ from
the signed hashes; agent folders outside the bundle are refused always.

One tiny bundle (3 scout agents, 100 training steps) per module; each case
works on a copy. A few cases go through the command lines.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest

from marl_edge.runtime.bundle import BundleError, load_agent_dir, load_bundle, read_manifest, sha256_file
from marl_edge.runtime.signing import (SIGNATURE, SigningError, TrustedKeys, generate_signing_key, load_private_key, sign_bundle,
                                       sign_manifest)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs: ``a`` (the team's) and ``b`` (somebody else's)."""
    root = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("a", "b"):
        priv, pub, kid = generate_signing_key(root / name)
        out[name] = {"priv": priv, "pub": pub, "id": kid}
    return out


@pytest.fixture(scope="module")
def signed(tmp_path_factory, make_bundle, keys):
    """A bundle exported and signed with key ``a`` by ``export_run(..., sign_key=...)``."""
    from marl_edge.export.bundle import export_run

    root = tmp_path_factory.mktemp("signed")
    unsigned = make_bundle(root, "plain", steps=100, env_options={"n_agents": 3, "episode_limit": 5})
    res = export_run(root / "run_plain", root / "signed", parity_steps=20, sign_key=keys["a"]["priv"])
    assert res["signed_by"] == keys["a"]["id"]
    assert not (unsigned / SIGNATURE).exists()
    return root / "signed"


def copy(bundle: Path, to: Path) -> Path:
    shutil.copytree(bundle, to)
    return to


# ---- keys -------------------------------------------------------------------------------------


def test_signing_key_is_private_and_its_public_half_is_shareable(keys, tmp_path):
    priv, pub = keys["a"]["priv"], keys["a"]["pub"]
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) & 0o044  # others may read the public key
    assert priv.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----") and pub.name == "a.pub"
    assert TrustedKeys.load([pub]).ids == [keys["a"]["id"]] and len(keys["a"]["id"]) == 16
    with pytest.raises(SigningError, match="already exists; pass --force"):
        generate_signing_key(priv)
    # a signing key others can read is refused (as ssh does)
    loose = tmp_path / "loose"
    shutil.copy(priv, loose)
    loose.chmod(0o644)
    with pytest.raises(SigningError, match=r"mode 0644 lets others read it; run chmod 600"):
        load_private_key(loose)
    # the two halves cannot be swapped by mistake
    with pytest.raises(SigningError, match="is a private key; give its public key"):
        TrustedKeys.load([priv])
    with pytest.raises(SigningError, match="not a PEM private key .that is a public key"):
        load_private_key(pub)
    # a key in a folder that does not exist yet (the README's `marl-keys signing keys/team`): made, private
    nested, _, _ = generate_signing_key(tmp_path / "new" / "team")
    assert stat.S_IMODE(nested.parent.stat().st_mode) == 0o700 and stat.S_IMODE(nested.stat().st_mode) == 0o600


# ---- verification -----------------------------------------------------------------------------


def test_a_signed_bundle_verifies_with_its_key(signed, keys):
    sig = json.loads((signed / SIGNATURE).read_text())
    assert sig["algorithm"] == "ed25519" and sig["key_id"] == keys["a"]["id"]
    assert sig["manifest_sha256"] == sha256_file(signed / "swarm.json")
    b = load_bundle(signed, trusted_keys=[keys["a"]["pub"]])
    assert b.signer == keys["a"]["id"]
    # any one of several trusted keys will do; without keys nothing is required
    assert load_bundle(signed, trusted_keys=[keys["b"]["pub"], keys["a"]["pub"]]).signer == keys["a"]["id"]
    assert load_bundle(signed).signer is None


def test_an_unsigned_bundle_is_refused_when_a_key_is_trusted(signed, keys, tmp_path):
    b = copy(signed, tmp_path / "b")
    (b / SIGNATURE).unlink()
    with pytest.raises(SigningError, match=r"bundle .*/b is not signed \(no swarm.json.sig\) but --trusted-key was given"):
        load_bundle(b, trusted_keys=[keys["a"]["pub"]])
    load_bundle(b)  # still a valid bundle for whoever trusts no key


def test_a_signature_by_another_key_is_refused(signed, keys, tmp_path):
    b = copy(signed, tmp_path / "b")
    sign_bundle(b, keys["b"]["priv"])
    with pytest.raises(SigningError) as e:
        load_bundle(b, trusted_keys=[keys["a"]["pub"]])
    text = str(e.value)
    assert "the signature does not verify with any trusted key" in text and f"made by key {keys['b']['id']}, which is not trusted" in text
    assert "\n" not in text


def test_a_rehashed_manifest_fails_the_signature(signed, keys, tmp_path):
    """The attacker changes a weight file and writes its new sha256 into agent.json and swarm.json:
    the hashes agree again, so only the signature can tell."""
    b = copy(signed, tmp_path / "b")
    pol = b / "agent_1" / "policy.onnx"
    data = bytearray(pol.read_bytes())
    data[-10] ^= 0xFF
    pol.write_bytes(bytes(data))
    card = json.loads((b / "agent_1" / "agent.json").read_text())
    card["policy_sha256"] = sha256_file(pol)
    (b / "agent_1" / "agent.json").write_text(json.dumps(card, indent=2))
    m = json.loads((b / "swarm.json").read_text())
    m["agents"][1]["files"] = {"policy.onnx": sha256_file(pol), "agent.json": sha256_file(b / "agent_1" / "agent.json")}
    (b / "swarm.json").write_text(json.dumps(m, indent=2))
    load_bundle(b)  # unsigned, the change goes unnoticed
    with pytest.raises(SigningError, match=r"swarm.json.sig: the signature does not verify with any trusted key: swarm.json was changed after it was signed"):
        load_bundle(b, trusted_keys=[keys["a"]["pub"]])
    # the same with the signature file's own checksum edited too: the signature still fails
    sig = json.loads((b / SIGNATURE).read_text())
    sig["manifest_sha256"] = sha256_file(b / "swarm.json")
    (b / SIGNATURE).write_text(json.dumps(sig))
    with pytest.raises(SigningError, match=r"does not verify with any trusted key: the signature of key \w+ is corrupt"):
        load_bundle(b, trusted_keys=[keys["a"]["pub"]])


def test_a_changed_file_under_a_signed_manifest_is_named(signed, keys, tmp_path):
    b = copy(signed, tmp_path / "b")
    pol = b / "agent_2" / "policy.onnx"
    data = bytearray(pol.read_bytes())
    data[-10] ^= 0xFF
    pol.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"agent_2/policy.onnx: sha256 \w+… does not match the signed manifest's \w+… \(agent 2\)"):
        load_bundle(b, trusted_keys=[keys["a"]["pub"]])
    # marl-agent's path: the manifest read with the keys, then the one folder
    m = read_manifest(b / "swarm.json", trusted_keys=[keys["a"]["pub"]])
    load_agent_dir(b / "agent_0", m)
    with pytest.raises(BundleError, match="agent_2/policy.onnx: sha256 .* signed manifest's"):
        load_agent_dir(b / "agent_2", m)


def test_a_corrupt_signature_file_is_one_line(signed, keys, tmp_path):
    b = copy(signed, tmp_path / "b")
    sig = json.loads((b / SIGNATURE).read_text())
    raw = bytearray(base64.b64decode(sig["signature"]))
    raw[0] ^= 1
    (b / SIGNATURE).write_text(json.dumps({**sig, "signature": base64.b64encode(bytes(raw)).decode()}))
    with pytest.raises(SigningError, match=f"the signature of key {keys['a']['id']} is corrupt"):
        load_bundle(b, trusted_keys=[keys["a"]["pub"]])
    for text, message in [("not json", "swarm.json.sig is corrupt"), ("[]", "is not a marl-edge signature"),
                          (json.dumps({**sig, "algorithm": "rsa"}), "algorithm 'rsa' is not supported"),
                          (json.dumps({**sig, "signature": "abc"}), "signature: expected 64 bytes of base64")]:
        (b / SIGNATURE).write_text(text)
        with pytest.raises(SigningError, match=message) as e:
            load_bundle(b, trusted_keys=[keys["a"]["pub"]])
        assert "\n" not in str(e.value)


def test_resigning_checks_the_files_first(signed, keys, tmp_path):
    b = copy(signed, tmp_path / "b")
    with open(b / "agent_0" / "policy.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="agent_0/policy.onnx: sha256"):
        sign_bundle(b, keys["a"]["priv"])


def test_without_cryptography_a_trusted_key_says_what_to_install(signed, keys, monkeypatch):
    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(SigningError, match=r"need the cryptography package, which this install lacks: pip install 'marl-edge\[crypto\]'"):
        load_bundle(signed, trusted_keys=[keys["a"]["pub"]])
    load_bundle(signed)  # no key, no cryptography needed


# ---- agent folders stay inside the bundle (signed or not) -------------------------------------


@pytest.mark.parametrize("folder,message", [("../x", "got '../x' (it climbs out with '..')"),
                                            ("/abs", "got '/abs' (an absolute path)"),
                                            ("agent_1/../../x", "got 'agent_1/../../x' (it climbs out with '..')")])
def test_agent_folders_outside_the_bundle_are_refused(signed, tmp_path, folder, message):
    b = copy(signed, tmp_path / "b")
    m = json.loads((b / "swarm.json").read_text())
    m["agents"][1]["dir"] = folder
    (b / "swarm.json").write_text(json.dumps(m, indent=2))
    with pytest.raises(BundleError, match=re.escape(f"agents[1].dir: expected a folder name inside the bundle (agent_1), {message}")):
        load_bundle(b)


def test_a_symlinked_agent_folder_or_file_outside_the_bundle_is_refused(signed, tmp_path):
    b = copy(signed, tmp_path / "b")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(b / "agent_1", elsewhere)
    os.symlink(elsewhere, b / "agent_1")
    with pytest.raises(BundleError, match=r"agent_1 resolves to .*/elsewhere, outside the bundle"):
        load_bundle(b)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(b, verify_files=False)  # the folders are checked even when their files are not
    # a symlink that stays inside the bundle is fine
    (b / "agent_1").unlink()
    shutil.move(elsewhere, b / "real_1")
    os.symlink("real_1", b / "agent_1")
    load_bundle(b)
    # a file symlinked out of its folder is refused even when its bytes match
    c = copy(signed, tmp_path / "c")
    outside = tmp_path / "policy_outside.onnx"
    shutil.move(c / "agent_0" / "policy.onnx", outside)
    os.symlink(outside, c / "agent_0" / "policy.onnx")
    with pytest.raises(BundleError, match=r"agent_0/policy.onnx resolves to .*policy_outside.onnx, outside its agent folder"):
        load_bundle(c)


# ---- the command lines ------------------------------------------------------------------------


def _one_error_line(p, message: str) -> None:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_cli_eval_checks_the_signature(signed, keys, cli):
    p = cli("evaluate", str(signed), "--episodes", "1", "--trusted-key", str(keys["a"]["pub"]), "--json", timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["signed_by"] == keys["a"]["id"]
    p = cli("evaluate", str(signed), "--episodes", "1", "--trusted-key", str(keys["b"]["pub"]), timeout=120)
    _one_error_line(p, f"swarm.json.sig: the signature does not verify with any trusted key: it was made by key {keys['a']['id']}")


def test_cli_swarm_passes_the_keys_to_its_agents(signed, keys, cli, tmp_path):
    """marl-swarm checks the bundle and starts every marl-agent with the same --trusted-key: they run."""
    p = cli("swarm", str(signed), "--episodes", "1", "--trusted-key", str(keys["a"]["pub"]), "--quiet", "--json", timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["episodes"] == 1
    p = cli("swarm", str(signed), "--write-profiles", str(tmp_path / "prof"), "--world-bind", "tcp://10.0.0.1:5555",
            "--trusted-key", "/etc/marl/team.pub", timeout=60)
    _one_error_line(p, "trusted key /etc/marl/team.pub does not exist")  # the workstation checks the bundle with the key it names
    p = cli("swarm", str(signed), "--write-profiles", str(tmp_path / "prof"), "--world-bind", "tcp://10.0.0.1:5555",
            "--trusted-key", str(keys["a"]["pub"]), timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "prof" / "agent_0.json").read_text())["trusted_keys"] == [str(keys["a"]["pub"])]


def test_cli_agent_refuses_an_unsigned_bundle(signed, keys, cli, tmp_path):
    b = copy(signed, tmp_path / "b")
    (b / SIGNATURE).unlink()
    p = cli("agent", str(b / "agent_0"), "--world", "ipc:///nonexistent", "--trusted-key", str(keys["a"]["pub"]), timeout=120)
    _one_error_line(p, f"bundle {b} is not signed (no swarm.json.sig) but --trusted-key was given")


def test_cli_keys_makes_a_key_pair_and_signs(signed, cli, tmp_path):
    p = cli("keys", "signing", str(tmp_path / "k"), "--json", timeout=60)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600 and (tmp_path / "k.pub").is_file()
    b = copy(signed, tmp_path / "b")
    p = cli("keys", "sign", str(b), "--key", str(tmp_path / "k"), timeout=60)
    assert p.returncode == 0 and got["key_id"] in p.stdout, p.stderr
    assert load_bundle(b, trusted_keys=[tmp_path / "k.pub"]).signer == got["key_id"]
    _one_error_line(cli("keys", "signing", str(tmp_path / "k"), timeout=60), "k already exists; pass --force")


def test_sign_manifest_signs_the_exact_bytes(signed, keys, tmp_path):
    """Reformatting the manifest (same JSON, other bytes) breaks the signature: what is signed is the file."""
    b = copy(signed, tmp_path / "b")
    m = json.loads((b / "swarm.json").read_text())
    (b / "swarm.json").write_text(json.dumps(m))  # no indent
    with pytest.raises(SigningError, match="swarm.json was changed after it was signed"):
        load_bundle(b, trusted_keys=[keys["a"]["pub"]])
    sign_manifest(b / "swarm.json", keys["a"]["priv"])
    assert load_bundle(b, trusted_keys=[keys["a"]["pub"]]).signer == keys["a"]["id"]
