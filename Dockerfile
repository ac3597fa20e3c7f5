# One image for every Caterva2 daemon: cat2pub, cat2sub, cat2bro (see docker-compose.yml).
FROM python:3.11-slim

WORKDIR /srv
COPY pyproject.toml README.md ./
COPY caterva2 caterva2
COPY common common
COPY broker broker
COPY publisher publisher
COPY subscriber subscriber
COPY root-example root-example
RUN pip install --no-cache-dir '.[subscriber,publisher,hdf5]'

COPY lab/compose.toml /etc/caterva2/caterva2.toml
VOLUME ["/data"]
EXPOSE 8000 8001
CMD ["cat2sub", "--conf", "/etc/caterva2/caterva2.toml"]
