"""Hotline: one distribution for cardd, ctid, recorderd, ctisim and the operator tools."""
import glob
import os
import subprocess
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_protos():
    """Compile proto/hotline/*.proto into hotline_proto/ (the wire contract's Python side)."""
    from grpc_tools import protoc  # build requirement

    protos = sorted(glob.glob(os.path.join(HERE, "proto", "hotline", "*.proto")))
    args = ["protoc", f"-I{os.path.join(HERE, 'proto')}",
            f"--python_out={HERE}", f"--pyi_out={HERE}"] + protos
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # protoc writes hotline/<name>_pb2.py; move into hotline_proto and fix imports.
    src_dir = os.path.join(HERE, "hotline")
    for path in glob.glob(os.path.join(src_dir, "*_pb2.py*")):
        with open(path) as f:
            text = f.read().replace("from hotline import", "from hotline_proto import")
        with open(os.path.join(HERE, "hotline_proto", os.path.basename(path)), "w") as f:
            f.write(text)
        os.remove(path)
    if os.path.isdir(src_dir) and not os.listdir(src_dir):
        os.rmdir(src_dir)


class BuildPy(build_py):
    def run(self):
        generate_protos()
        super().run()


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "protos":
    generate_protos()
    raise SystemExit(0)

setup(
    name="hotline",
    version="0.1.0",
    description="Telephony card driver daemon and CTI server",
    license="GPL-2.0-or-later",
    python_requires=">=3.11",
    packages=find_packages(include=["drivers*", "ctid*", "ivr*", "recorder*",
                                    "simulators*", "hotline_proto*"]),
    include_package_data=True,
    package_data={
        "drivers.media.plans": ["*.toml"],
        "ctid.storage": ["alembic.ini", "migrations/*.py", "migrations/*.mako",
                         "migrations/versions/*.py"],
    },
    install_requires=[
        "numpy>=1.26", "cffi>=1.16", "pyzmq>=25", "protobuf>=5",
        "prometheus_client>=0.19", "PyYAML>=6", "SQLAlchemy>=2.0", "alembic>=1.12",
        "soundfile>=0.12", "openpyxl>=3.1", "matplotlib>=3.8", "psycopg2-binary>=2.9",
    ],
    setup_requires=["cffi>=1.16"],
    cffi_modules=[
        "cffi_build/build_dahdi.py:ffibuilder",
        "cffi_build/build_spandsp.py:ffibuilder",
        "cffi_build/build_pri.py:ffibuilder",
    ],
    cmdclass={"build_py": BuildPy},
    entry_points={"console_scripts": [
        "cardd=drivers.cardd:main",
        "cardctl=drivers.cardctl:main",
        "ctisim=simulators.ctisim:main",
        "ctid=ctid.daemon:main",
        "ctictl=ctid.ctictl:main",
    ]},
)
