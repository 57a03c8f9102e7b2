package services

import (
	"encoding/json"
	"net/http"

	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
)

// PlatformTransportID names the one transport the platform provides: REST
// over HTTP, secured with OAuth 2.0 client credentials from /mep/token.
const PlatformTransportID = "kmep-rest-http"

func platformTransportInfo() *mec.TransportInfo {
	return &mec.TransportInfo{
		ID:          PlatformTransportID,
		Name:        "REST",
		Description: "REST API over HTTP, Bearer tokens from the platform's token endpoint",
		Type:        "REST_HTTP",
		Protocol:    "HTTP",
		Version:     "1.1",
		Endpoint:    &mec.EndPointInfo{URIs: []string{BasePath}},
		Security: &mec.SecurityInfo{OAuth2Info: &mec.OAuth2Info{
			GrantTypes:    []string{"OAUTH2_CLIENT_CREDENTIALS"},
			TokenEndpoint: mec.TokenPath,
		}},
	}
}

func platformTransport(id string) *mec.TransportInfo {
	if id == PlatformTransportID {
		return platformTransportInfo()
	}
	return nil
}

func (h *handler) transports(w http.ResponseWriter, r *http.Request) error {
	body, _ := json.Marshal([]*mec.TransportInfo{platformTransportInfo()})
	return rest.WriteJSON(w, http.StatusOK, body)
}
