# The platform image: API (gunicorn), workers (dramatiq), migrations and the CLI. Framework sandbox images are built
# from evaluator/images/ (`evaluator images build`, on the host).
#   docker build -t evaluator-platform .                       # python:3.11-slim, pip fetches from PyPI
# Offline (no registry, no PyPI inside the build): a local base with python3 + python3-venv, and the wheels
# downloaded by the host's pip into .platform-wheels/ (copied to /deps). scripts/build-platform-image.sh does both:
#   docker build --network host --build-arg BASE_IMAGE=evaluator-rootfs:bookworm \
#     --build-arg PIP_OPTIONS="--no-index --find-links /deps" -t evaluator-platform .
# The package is installed like any user's `pip install`: migrations, image build contexts and gunicorn settings
# ship inside it. /src keeps only http/gunicorn.conf.py (a thin import) for `gunicorn -c http/gunicorn.conf.py`.
ARG BASE_IMAGE=python:3.11-slim

# --- dependencies: rebuilt only when setup.cfg, pyproject.toml (or the downloaded wheels) change
FROM ${BASE_IMAGE} AS deps
ARG PIP_OPTIONS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# .platform-wheel[s]: optional (matches nothing where no wheels were downloaded); its wheels land in /deps.
COPY setup.cfg pyproject.toml scripts/platform-requirements.py .platform-wheel[s] /deps/
RUN python3 /deps/platform-requirements.py /deps > /deps/requirements.txt \
 && python3 -m venv /opt/evaluator \
 && /opt/evaluator/bin/pip install ${PIP_OPTIONS} -r /deps/requirements.txt

# --- the platform: the venv above (no wheels left in the image), then the source, installed without dependencies
FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/evaluator PATH=/opt/evaluator/bin:$PATH
COPY --from=deps /opt/evaluator /opt/evaluator
COPY setup.cfg pyproject.toml README.md /tmp/build/
COPY evaluator /tmp/build/evaluator
COPY http /src/http
RUN pip install --no-index --no-deps --no-build-isolation /tmp/build \
 && rm -rf /tmp/build \
 && evaluator --help >/dev/null
WORKDIR /src
EXPOSE 8000
CMD ["evaluator", "api"]
