"""The demo's private ctid.toml: the shipped dial plan, everything else inside the run's
own directory, CURVE on with keys made for the run."""
import os

import pytest

from ctid.config import ConfigError, load_ctid_config
from ctid.cti.auth import KeyStore, load_keypair, load_public_key
from simulators.ctid_demo import CTID_TOML, private_ctid_config


@pytest.fixture
def setup(tmp_path):
    return private_ctid_config(str(tmp_path), f"ipc://{tmp_path}/run/cardd-events.sock",
                               f"ipc://{tmp_path}/run/cardd-commands.sock", 19999)


def test_shipped_dial_plan_applies(setup):
    mine, shipped = load_ctid_config(setup.config_path), load_ctid_config(CTID_TOML)
    assert [(e.number, str(e.channel)) for e in mine.extensions] == \
        [(e.number, str(e.channel)) for e in shipped.extensions]
    assert [(r.match, r.to, r.closed_to) for r in mine.routes] == \
        [(r.match, r.to, r.closed_to) for r in shipped.routes]
    assert [g.number for g in mine.trunk_groups] == ["12345"]


def test_everything_it_writes_or_binds_is_in_the_run_directory(setup, tmp_path):
    cfg = load_ctid_config(setup.config_path)
    inside = str(tmp_path) + os.sep
    assert cfg.ctid.run_dir.startswith(inside)
    assert cfg.cti.events.startswith(f"ipc://{inside}") and cfg.cti.requests.startswith(f"ipc://{inside}")
    assert cfg.database.url == f"sqlite:///{setup.run_dir}/hotline.db"
    assert cfg.database.spool_dir.startswith(inside)
    assert cfg.metrics.listen == "127.0.0.1:19999"
    assert [(n.node, n.events) for n in cfg.cardd] == [("node1", f"ipc://{tmp_path}/run/cardd-events.sock")]
    if cfg.ivr is not None:
        assert cfg.ivr["tts_cache"].startswith(inside)
        assert all(os.path.isabs(p) and os.path.exists(p) for p in cfg.ivr["flows"])
        assert all(u.startswith(f"sqlite:///{inside}") for u in cfg.ivr["sources"].values()
                   if u.startswith("sqlite"))


def test_curve_keys_are_made_for_the_run(setup, tmp_path):
    cfg = load_ctid_config(setup.config_path)
    assert cfg.cti.curve and cfg.cti.server_key.startswith(str(tmp_path))
    public, _ = load_keypair(setup.client_secret)
    client = KeyStore.load(cfg.cti.keys).by_name["liveview"]
    assert client.public_key == public.decode() and client.role == "observer"
    assert len(load_public_key(setup.server_public)) == 40
    again = private_ctid_config(str(tmp_path / "other"), "ipc://a", "ipc://b", 19998)
    assert load_public_key(again.server_public) != load_public_key(setup.server_public)


def test_a_bad_source_is_refused_with_its_place(tmp_path):
    bad = tmp_path / "ctid.toml"
    bad.write_text('[[cardd]]\nnode = "node1"\n\n[[extension]]\nnumber = "8001"\nchannel = "node9/1"\n')
    with pytest.raises(ConfigError) as e:
        private_ctid_config(str(tmp_path / "run"), "ipc://a", "ipc://b", 19997, source=str(bad))
    assert f"{bad}:6" in str(e.value) and "node9" in str(e.value)


def test_more_than_one_cardd_is_refused(tmp_path):
    two = tmp_path / "ctid.toml"
    two.write_text('[[cardd]]\nnode = "a"\nevents = "ipc://a1"\ncommands = "ipc://a2"\n\n'
                   '[[cardd]]\nnode = "b"\nevents = "ipc://b1"\ncommands = "ipc://b2"\n')
    with pytest.raises(ValueError, match="one cardd"):
        private_ctid_config(str(tmp_path / "run"), "ipc://a", "ipc://b", 19996, source=str(two))
