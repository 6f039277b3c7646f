package event

import (
	"errors"
	"fmt"
)

// ErrInvalid is matched (errors.Is) by every validation failure.
var ErrInvalid = errors.New("invalid")

// ValidationError says which field broke which rule.
type ValidationError struct {
	Field string // JSON path of the offending field, e.g. "data.users_delta"
	Rule  string // what the field must satisfy, e.g. "required", "> 0"
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s: %s", e.Field, e.Rule)
}

// Is makes errors.Is(err, ErrInvalid) true for every ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, rule string, args ...any) error {
	return &ValidationError{Field: field, Rule: fmt.Sprintf(rule, args...)}
}
