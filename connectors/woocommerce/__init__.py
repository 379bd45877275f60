"""WooCommerce (REST API wc/v3): the connector's client and helpers, and `normalise`, which reads
its order, product and customer JSON into Koppel's canonical model."""
