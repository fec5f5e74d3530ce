# The platform image: API (gunicorn), workers (dramatiq) and the CLI. Framework sandbox images are in images/.
#   docker build --build-arg BASE_IMAGE=python:3.11-slim -t evaluator-platform .
# Offline (no registry, no PyPI inside the build): a local base with python3 + pip, and a wheelhouse:
#   docker build --network host --build-arg BASE_IMAGE=evaluator-base-python \
#     --build-arg PIP_OPTIONS="--no-index --find-links /src/wheelhouse" -t evaluator-platform .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG PIP_OPTIONS=""
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/evaluator PATH=/opt/evaluator/bin:$PATH
COPY . /src
RUN python3 -m venv /opt/evaluator \
 && pip install --no-cache-dir ${PIP_OPTIONS} /src \
 && rm -rf /src/wheelhouse
WORKDIR /src
EXPOSE 8000
CMD ["evaluator", "api"]
