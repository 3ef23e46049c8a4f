"""The managed MCP gateway and the OAuth authorization server that issues its tokens.

Lanyard is the authorization server (django-oauth-toolkit); the gateway process is the resource
server. Each token is bound (RFC 8707) to one connector endpoint and recorded as a register Grant.
"""
