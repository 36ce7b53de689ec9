# syntax=docker/dockerfile:1
#
# nnbrain BIDS App: production image.
#
#   docker build -t nnbrain .
#   docker run --rm --network none -v /data/bids:/data:ro -v /data/out:/out \
#       nnbrain /data /out participant --participant-label 01
#
# Two stages on the same Debian release (bookworm), so the interpreter that the builder's
# virtual environment links to (/usr/bin/python3) is the one the runtime stage ships.
# Debian's python3 refuses system-wide pip installs (PEP 668), hence the venv at /opt/venv.
# Dependencies are installed with pip exactly as pinned in setup.cfg (torch, torchvision, ...);
# git-annex comes from its PyPI wheel, so /opt/venv/bin must be on PATH.
# Apt versions are the Debian 12 (bookworm) candidates; bump them together when Debian
# publishes a point release.

############################################################################################
# builder: create /opt/venv and pip-install the project into it
############################################################################################
FROM debian:bookworm-slim AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates=20230311+deb12u1 \
        python3=3.11.2-1+b1 \
        python3-venv=3.11.2-1+b1 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir pip==26.3

# torch and torchvision first, in a layer of their own: gigabytes that change far less often
# than the source, so editing nnbrain does not re-download them. These pins must equal
# setup.cfg's (tests/test_dockerfile.py checks); `pip install /src` below then keeps them.
RUN /opt/venv/bin/python -m pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1

# Only what the build needs. bids_app/nnbrain/data/derivatives_spec may be a relative
# symlink to the top-level derivatives_spec/, so both keep their repository layout under /src.
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY derivatives_spec/ ./derivatives_spec/
COPY bids_app/ ./bids_app/

RUN /opt/venv/bin/python -m pip install --no-cache-dir /src \
    && /opt/venv/bin/python -c "import nnbrain; print('nnbrain', nnbrain.__version__)"

############################################################################################
# runtime: interpreter, git (DataLad), the venv, a non-root user
############################################################################################
FROM debian:bookworm-slim AS runtime

LABEL org.opencontainers.image.title="nnbrain" \
      org.opencontainers.image.description="BIDS App: layer x ROI similarity between deep neural networks and human brain activity" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.url="https://github.com/nnbrain/nnbrain" \
      org.opencontainers.image.source="https://github.com/nnbrain/nnbrain" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        git=1:2.39.5-0+deb12u3 \
        python3=3.11.2-1+b1 \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged user with a writable HOME. The system-wide git identity is a fallback for runs
# under another uid (docker run --user, Apptainer with the host's HOME); DataLad commits need one.
RUN groupadd --gid 1000 nnbrain \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/nnbrain --shell /bin/bash nnbrain \
    && git config --system user.name "nnbrain" \
    && git config --system user.email "nnbrain@localhost.invalid"

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:$PATH" \
    HOME=/home/nnbrain \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    CUBLAS_WORKSPACE_CONFIG=:4096:8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_INDEX=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Numeric uid:gid (the nnbrain user above), so runAsNonRoot-style checks can verify it.
USER 1000:1000
WORKDIR /home/nnbrain

# The user's own git identity, and a smoke test that the copied venv, its console script and
# the git-annex wheel all work in this stage.
RUN git config --global user.name "nnbrain" \
    && git config --global user.email "nnbrain@localhost.invalid" \
    && git annex version > /dev/null \
    && nnbrain --help > /dev/null

ENTRYPOINT ["nnbrain"]
CMD ["--help"]
