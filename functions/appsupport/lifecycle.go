package appsupport

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/mec"
)

func registrationPath(app string) string { return BasePath + "/registrations/" + url.PathEscape(app) }

// decodeConfirmation reads a confirmation body into v. A missing body is a
// missing member (the confirmation's one required member).
func decodeConfirmation(raw []byte, wrapper, member string, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return rest.BadField(fieldErr(member, "is required"))
	}
	return rest.BadField(mec.DecodeBytes(raw, wrapper, v))
}

// readConfirmation reads the body of a confirm_* call for the caller's own
// app: a T (or its v3 wrapper) whose member must be one of allowed.
func readConfirmation[T any](w http.ResponseWriter, r *http.Request, wrapper, member string, allowed []string, value func(*T) string) (string, error) {
	app, err := rest.Own(r)
	if err != nil {
		return "", err
	}
	raw, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return "", err
	}
	var c T
	if err := decodeConfirmation(raw, wrapper, member, &c); err != nil {
		return "", err
	}
	if err := oneOf(member, value(&c), allowed); err != nil {
		return "", rest.BadField(err)
	}
	return app, nil
}

// confirmReady answers POST .../confirm_ready with AppReadyConfirmation
// {"indication":"READY"}: 204.
func (h *handler) confirmReady(w http.ResponseWriter, r *http.Request) error {
	app, err := readConfirmation(w, r, "AppReadyConfirmation", "indication", []string{"READY"},
		func(c *AppReadyConfirmation) string { return c.Indication })
	if err != nil {
		return err
	}
	if _, err := h.Store.ConfirmReady(r.Context(), app); err != nil {
		return fmt.Errorf("confirm ready: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// confirmTermination answers POST .../confirm_termination with
// AppTerminationConfirmation {"operationAction":"TERMINATING"|"STOPPING"}:
// 204, or 409 when no termination of the app is in progress. Confirming
// again is a 204 that changes nothing.
func (h *handler) confirmTermination(w http.ResponseWriter, r *http.Request) error {
	app, err := readConfirmation(w, r, "AppTerminationConfirmation", "operationAction", OperationActions,
		func(c *AppTerminationConfirmation) string { return c.OperationAction })
	if err != nil {
		return err
	}
	_, err = h.Store.ConfirmTermination(r.Context(), app)
	if errors.Is(err, store.ErrConflict) {
		return &problem.Error{Status: http.StatusConflict, Detail: "no termination of this app instance is in progress", Cause: err}
	}
	if err != nil {
		return fmt.Errorf("confirm termination: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodeRegistration reads an AppInfo whose appInstanceId must be the
// caller's (403 otherwise).
func decodeRegistration(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	raw, err := rest.ReadBody(w, r, MaxBody)
	if err != nil {
		return nil, err
	}
	app, body, err := DecodeAppInfo(raw)
	if err != nil {
		return nil, rest.BadField(err)
	}
	if err := rest.CheckCaller(r, app); err != nil {
		return nil, err
	}
	return body, nil
}

func notRegistered() error { return problem.NotFound("this app instance is not registered") }

// register answers POST /registrations: 201 with Location and ETag, 409
// when the app instance is registered already.
func (h *handler) register(w http.ResponseWriter, r *http.Request) error {
	body, err := decodeRegistration(w, r)
	if err != nil {
		return err
	}
	app := rest.Caller(r)
	reg, err := h.Store.CreateRegistration(r.Context(), store.Registration{AppInstanceID: app, Body: body})
	if errors.Is(err, store.ErrConflict) {
		return &problem.Error{Status: http.StatusConflict, Detail: "this app instance is registered already; PUT " + registrationPath(app) + " updates it", Cause: err}
	}
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	w.Header().Set("Location", rest.Absolute(r, registrationPath(app)))
	w.Header().Set("ETag", rest.ETag(reg.Rev))
	return rest.WriteJSON(w, http.StatusCreated, reg.Body)
}

// getRegistration answers GET /registrations/{appInstanceId} with the AppInfo and its ETag.
func (h *handler) getRegistration(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
	if err != nil {
		return err
	}
	reg, err := h.Store.GetRegistration(r.Context(), app)
	if errors.Is(err, store.ErrNotFound) {
		return notRegistered()
	}
	if err != nil {
		return err
	}
	w.Header().Set("ETag", rest.ETag(reg.Rev))
	return rest.WriteJSON(w, http.StatusOK, reg.Body)
}

// updateRegistration answers PUT /registrations/{appInstanceId}: 204 with
// the new ETag (MEC 011 3.1.1 answers PUT without a body); If-Match
// honoured.
func (h *handler) updateRegistration(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
	if err != nil {
		return err
	}
	body, err := decodeRegistration(w, r)
	if err != nil {
		return err
	}
	cond := rest.IfMatch(r)
	if cond < 0 {
		if _, err := h.Store.GetRegistration(r.Context(), app); errors.Is(err, store.ErrNotFound) {
			return notRegistered()
		} else if err != nil {
			return err
		}
		return store.ErrPrecondition
	}
	reg, err := h.Store.UpdateRegistration(r.Context(), store.Registration{AppInstanceID: app, Body: body}, cond)
	if errors.Is(err, store.ErrNotFound) {
		return notRegistered()
	}
	if err != nil {
		return fmt.Errorf("update registration: %w", err)
	}
	w.Header().Set("ETag", rest.ETag(reg.Rev))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deregister answers DELETE /registrations/{appInstanceId}: 204.
func (h *handler) deregister(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
	if err != nil {
		return err
	}
	err = h.Store.DeleteRegistration(r.Context(), app)
	if errors.Is(err, store.ErrNotFound) {
		return notRegistered()
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
