package appsupport_test

import (
	"testing"

	"github.com/kmep-io/kmep/functions/appsupport"
)

func TestDecodeAppInfoKeepsMembers(t *testing.T) {
	app, got, err := appsupport.DecodeAppInfo([]byte(`{"AppInfo": {"vendor": {"b": 1, "a": [1, 2]}, "appName": "n", "appInstanceId": "app-a", "endpoint": {"uris": ["http://10.0.0.1"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"appInstanceId":"app-a","appName":"n","endpoint":{"uris":["http://10.0.0.1"]},"vendor":{"b":1,"a":[1,2]}}`
	if app != "app-a" || string(got) != want {
		t.Errorf("DecodeAppInfo = %q, %s\nwant %s", app, got, want)
	}
}
