package model

import (
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
)

// GRPCStatus parses a gRPC status as Istio config writes it (a fault's
// abort.grpcStatus): its name in any case ("UNAVAILABLE") or its number
// (0 to 16). False when s is neither.
func GRPCStatus(s string) (uint32, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		return uint32(n), n >= 0 && n <= 16
	}
	var c codes.Code
	if c.UnmarshalJSON([]byte(strconv.Quote(strings.ToUpper(s)))) != nil {
		return 0, false
	}
	return uint32(c), true
}
