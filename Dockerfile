# examctl image: `docker build -t examctl:0.1.0 .`, then `docker run --rm examctl:0.1.0 --help`.
# Configuration comes from the environment at run time (DATABASE_URL, REDIS_URL, AWS_*, …):
# nothing secret is baked in.

# --- build: a virtualenv with the dependencies, then the package -------------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/examctl
ENV PATH=/opt/examctl/bin:$PATH
WORKDIR /src

# Dependencies first, read from pyproject.toml alone: this layer is rebuilt only when the
# dependencies change, not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

# Then the package itself (README.md: pyproject's `readme`, needed to build the metadata).
COPY README.md ./
COPY examctl ./examctl
RUN pip install --no-cache-dir --no-deps . \
    && examctl --help > /dev/null

# --- runtime: the virtualenv and a non-root user, no build leftovers --------------------------
FROM python:3.11-slim-bookworm

# A numeric user, so Kubernetes' runAsNonRoot can check it; its home is the working directory
# for the embedded SQLite default and a local archive (`docker run -v examctl:/var/lib/examctl`).
RUN groupadd --system --gid 10001 examctl \
    && useradd --system --uid 10001 --gid examctl --home-dir /var/lib/examctl --create-home \
       --shell /usr/sbin/nologin examctl

COPY --from=build /opt/examctl /opt/examctl
ENV PATH=/opt/examctl/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EXAMCTL_LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/examctl

ENTRYPOINT ["examctl"]
CMD ["--help"]
