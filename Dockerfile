# The operator's image (docs/deploy.md). The tag names an exact Python release on Debian 12; pin
# its digest too (`python:3.11.13-slim-bookworm@sha256:...`) where the registry is reachable.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# Builder: the package and its dependencies, from pyproject.toml, into a virtualenv at the path it
# keeps in the final stage (a venv's scripts name their interpreter by absolute path).
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/whatsapp-operator
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/whatsapp-operator/bin/pip install . \
    && /opt/whatsapp-operator/bin/pip uninstall --yes pip

# Final: the same base without the build context, pip or the sources; the venv is all that is added.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="whatsapp-operator" \
      org.opencontainers.image.description="Kubernetes operator for drivers' WhatsApp links on Evolution API" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named user for tools that look the uid up; Kubernetes runs it by number (runAsUser 65532).
RUN groupadd --system --gid 65532 whatsapp-operator \
    && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin whatsapp-operator
COPY --from=builder /opt/whatsapp-operator /opt/whatsapp-operator
# Bytecode was compiled at install time; the root filesystem is read-only at run time.
ENV PATH=/opt/whatsapp-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# kopf's liveness endpoint, the HTTP server (status API, webhooks), the metrics.
EXPOSE 8080 8081 9102
ENTRYPOINT ["whatsapp-operator"]
CMD ["run"]
