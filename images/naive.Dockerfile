# The naive baseline the build report compares against: the same pinned packages (every lock group)
# and the same OS tools on the same base, installed the way a hand-written Dockerfile usually does it
# (one stage, one pip install, apt with recommends and its lists left behind).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008,DL3009,DL3015
RUN headers=(); if [ ! -e /usr/local/bin/python3 ]; then headers=(python3-dev); fi; \
    apt-get update && apt-get install -y python3 python3-venv ca-certificates tini passwd git curl wget less nano procps \
    pandoc texlive-xetex texlive-fonts-recommended texlive-plain-generic cm-super dvipng \
    ffmpeg fonts-liberation fonts-dejavu gcc g++ make libc6-dev "${headers[@]}"
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 -m venv /opt/venv && /opt/venv/bin/pip install -r /tmp/requirements.txt
