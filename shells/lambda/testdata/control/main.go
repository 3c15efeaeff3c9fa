// Command control is the baseline of the cold start measurement: a Go
// function on the same runtime client that answers every event at once,
// with nothing to open. What the bootstrap takes beyond it is its own.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
)

type answer struct{}

func (answer) Invoke(context.Context, []byte) ([]byte, error) {
	return []byte(`{"statusCode":200,"headers":{"Content-Type":"text/plain"},"body":"ok"}`), nil
}

func main() { lambda.Start(answer{}) }
