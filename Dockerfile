# One image for both services: `usage-monitor worker` and `notifier`.
FROM python:3.11-slim AS build
# gcc builds the usage path's compiled record reader (services/usage_monitor/adapters/_records.c);
# only the build stage has it.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md requirements-runtime.lock ./
# The pinned, hash-checked dependencies first (`make lock`), then the project without any.
RUN pip install --no-cache-dir --prefix=/install --require-hashes -r requirements-runtime.lock
COPY libs ./libs
COPY services ./services
RUN pip install --no-cache-dir --prefix=/install --no-deps .

FROM python:3.11-slim
RUN useradd --system --uid 10001 simwatch
COPY --from=build /install /usr/local
USER simwatch
ENV PYTHONUNBUFFERED=1
EXPOSE 6066 6067
CMD ["usage-monitor", "worker"]
