package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// UnmarshalJSON accepts both shapes Connaisseur uses for `host`: a plain
// string (notaryv1's server, kept in Server) or an object (cosign's
// transparency-log settings).
func (h *Host) UnmarshalJSON(data []byte) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '"' {
		var s string
		if err := json.Unmarshal(trimmed, &s); err != nil {
			return fmt.Errorf("host: %w", err)
		}
		*h = Host{Server: s}
		return nil
	}
	// A custom unmarshaler does not inherit the caller's strictness, so
	// unknown fields are refused here explicitly, like everywhere else.
	type plain Host
	var p plain
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	*h = Host(p)
	return nil
}

// MarshalJSON writes Host back in the shape it was read in.
func (h Host) MarshalJSON() ([]byte, error) {
	if h.Server != "" && h == (Host{Server: h.Server}) {
		return json.Marshal(h.Server)
	}
	type plain Host
	return json.Marshal(plain(h))
}
