"""bench/pair: the main job (the whole WooCommerce ⇄ Exact Online pair) measured in Exact API calls."""
