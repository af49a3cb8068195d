"""tunduk.client: zeep clients for X-Road services behind a tunduk security server."""
from .errors import (ClientError, ClientProxyError, ServerProxyError, ServiceFault,
                     XRoadFault)
from .xroad import XRoadHeaderPlugin, XRoadServiceClient, make_client, wsdl_url

__all__ = ["make_client", "XRoadServiceClient", "XRoadHeaderPlugin", "wsdl_url",
           "XRoadFault", "ClientError", "ClientProxyError", "ServerProxyError",
           "ServiceFault"]
