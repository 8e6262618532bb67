"""ctictl's offline commands: keygen writes a usable key pair and a keys-file entry;
check-config checks ctid.toml together with the CTI keys it names."""
import os

from ctid.cti.auth import KeyStore, load_keypair
from ctid.ctictl import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_keygen_prints_an_entry_that_loads_as_a_keys_file(tmp_path, capsys):
    assert main(["keygen", "agent-1001", "--dir", str(tmp_path), "--role", "agent",
                 "--devices", "ext:8001", "--agents", "1001"]) == 0
    out = capsys.readouterr().out
    entry = out[out.index("[clients.agent-1001]"):]
    (tmp_path / "clients.toml").write_text(entry)
    client = KeyStore.load(str(tmp_path / "clients.toml")).by_name["agent-1001"]
    assert client.role == "agent" and client.scope.device("ext:8001") and client.scope.agent("1001")
    assert client.public_key == load_keypair(str(tmp_path / "agent-1001.key_secret"))[0].decode()
    assert main(["keygen", "agent-1001", "--dir", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err


def test_check_config_reads_the_keys_too(tmp_path, capsys):
    assert main(["check-config", os.path.join(ROOT, "etc/ctid.toml")]) == 0
    assert "ok" in capsys.readouterr().out
    main(["keygen", "ctid", "--dir", str(tmp_path)])
    (tmp_path / "clients.toml").write_text('[clients.a]\nkey = "short"\nrole = "admin"\n')
    text = open(os.path.join(ROOT, "etc/ctid.toml")).read()
    text = text.replace('# keys = "run/keys/clients.toml"', f'keys = "{tmp_path}/clients.toml"')
    text = text.replace('# server_key = "run/keys/ctid.key_secret"',
                        f'server_key = "{tmp_path}/ctid.key_secret"')
    (tmp_path / "ctid.toml").write_text(text)
    capsys.readouterr()
    assert main(["check-config", str(tmp_path / "ctid.toml")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/clients.toml:2: clients.a.key: must be a CURVE public key" in err
    (tmp_path / "ctid.toml").write_text(text.replace("[cti]", "[cti]\nretian = 5"))
    assert main(["check-config", str(tmp_path / "ctid.toml")]) == 2
    assert "retian" in capsys.readouterr().err
