# Prometheus for the offline compose test: Debian's binary on the local stand-in base image
# (prom/prometheus cannot be pulled here).
ARG BASE_IMAGE=fastsock-standin:bookworm
FROM ${BASE_IMAGE}
COPY prometheus /usr/local/bin/prometheus
RUN mkdir -p /prometheus && chown 65534:65534 /prometheus
USER 65534:65534
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
