"""The HTTP API (aiohttp): track endpoints (Basic ``site_id:api_key``), reads (bearer app key)."""
