package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// A stand-in for @pulumi/pulumi/cmd/run: it records what it was started with, then exits with the
// code the config asks for. Node runs it for real.
const fakeRunScript = `
const fs = require("fs");
const config = JSON.parse(process.env.PULUMI_CONFIG);
fs.writeFileSync(process.env.LANGHOST_TEST_RECORD, JSON.stringify({
  execArgv: process.execArgv,
  argv: process.argv.slice(2),
  cwd: process.cwd(),
  config,
  secretKeys: JSON.parse(process.env.PULUMI_CONFIG_SECRET_KEYS),
  typescript: process.env.PULUMI_NODEJS_TYPESCRIPT,
  tsconfig: process.env.PULUMI_NODEJS_TSCONFIG_PATH ?? null,
}));
process.exit(Number(config["test:exit"] ?? "0"));
`

type record struct {
	ExecArgv   []string          `json:"execArgv"`
	Argv       []string          `json:"argv"`
	Cwd        string            `json:"cwd"`
	Config     map[string]string `json:"config"`
	SecretKeys []string          `json:"secretKeys"`
	TypeScript string            `json:"typescript"`
	TSConfig   *string           `json:"tsconfig"`
}

// project makes a project folder whose node_modules holds the fake run script.
func project(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	run := filepath.Join(root, "node_modules", "@pulumi", "pulumi", "cmd", "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "index.js"), []byte(fakeRunScript), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "infra"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// serve starts the language host on a loopback port and returns a client over real gRPC.
func serve(t *testing.T) pulumirpc.LanguageRuntimeClient {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed for this test: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	pulumirpc.RegisterLanguageRuntimeServer(server, &languageHost{engineAddress: "127.0.0.1:1", node: node})
	go func() { _ = server.Serve(lis) }()
	t.Cleanup(server.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pulumirpc.NewLanguageRuntimeClient(conn)
}

func runRequest(t *testing.T, root string, options map[string]any, config map[string]string) *pulumirpc.RunRequest {
	t.Helper()
	opts, err := structpb.NewStruct(options)
	if err != nil {
		t.Fatal(err)
	}
	return &pulumirpc.RunRequest{
		MonitorAddress:   "127.0.0.1:4242",
		Pwd:              root,
		Project:          "dask-workspace",
		Stack:            "local",
		Config:           config,
		ConfigSecretKeys: []string{"dask-workspace:secret"},
		DryRun:           true,
		Parallel:         8,
		Info: &pulumirpc.ProgramInfo{
			RootDirectory:    root,
			ProgramDirectory: root,
			EntryPoint:       "infra/index.ts",
			Options:          opts,
		},
	}
}

func readRecord(t *testing.T, path string) record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the program did not run: %v", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunStartsNodeWithTheRunRequest(t *testing.T) {
	client := serve(t)
	root := project(t)
	recordPath := filepath.Join(t.TempDir(), "record.json")
	t.Setenv("LANGHOST_TEST_RECORD", recordPath)

	resp, err := client.Run(context.Background(), runRequest(t, root,
		map[string]any{"typescript": false, "nodeargs": "--max-old-space-size=256 --no-warnings", "tsconfig": "tsconfig.e2e.json"},
		map[string]string{"dask-workspace:target": "kubernetes", "test:exit": "0"}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetError() != "" || resp.GetBail() {
		t.Fatalf("a program that exits 0 must succeed, got %+v", resp)
	}
	r := readRecord(t, recordPath)
	if strings.Join(r.ExecArgv, " ") != "--max-old-space-size=256 --no-warnings" {
		t.Errorf("nodeargs must reach node before the script, got execArgv %v", r.ExecArgv)
	}
	want := []string{
		"--monitor=127.0.0.1:4242", "--engine=127.0.0.1:1", "--project=dask-workspace", "--stack=local",
		"--pwd=" + root, "--root-directory=" + root, "--dry-run", "--parallel=8",
		filepath.Join(root, "infra/index.ts"),
	}
	if strings.Join(r.Argv, "\n") != strings.Join(want, "\n") {
		t.Errorf("run script arguments:\n got %q\nwant %q", r.Argv, want)
	}
	if r.Cwd != root {
		t.Errorf("cwd %q, want %q", r.Cwd, root)
	}
	if r.Config["dask-workspace:target"] != "kubernetes" {
		t.Errorf("PULUMI_CONFIG must carry the stack config, got %v", r.Config)
	}
	if len(r.SecretKeys) != 1 || r.SecretKeys[0] != "dask-workspace:secret" {
		t.Errorf("PULUMI_CONFIG_SECRET_KEYS: got %v", r.SecretKeys)
	}
	if r.TypeScript != "false" {
		t.Errorf("typescript: false must reach the SDK, got %q", r.TypeScript)
	}
	if r.TSConfig == nil || *r.TSConfig != "tsconfig.e2e.json" {
		t.Errorf("tsconfig must reach the SDK, got %v", r.TSConfig)
	}
}

func TestTypeScriptDefaultsToTrue(t *testing.T) {
	client := serve(t)
	root := project(t)
	recordPath := filepath.Join(t.TempDir(), "record.json")
	t.Setenv("LANGHOST_TEST_RECORD", recordPath)
	if _, err := client.Run(context.Background(), runRequest(t, root, map[string]any{}, map[string]string{})); err != nil {
		t.Fatal(err)
	}
	if r := readRecord(t, recordPath); r.TypeScript != "true" || r.TSConfig != nil {
		t.Errorf("without options: typescript %q tsconfig %v, want true and unset", r.TypeScript, r.TSConfig)
	}
}

func TestExitCodes(t *testing.T) {
	client := serve(t)
	root := project(t)
	t.Setenv("LANGHOST_TEST_RECORD", filepath.Join(t.TempDir(), "record.json"))
	// The SDK's "already reported" code: the engine must bail without a second message.
	resp, err := client.Run(context.Background(), runRequest(t, root, nil, map[string]string{"test:exit": "32"}))
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetBail() || resp.GetError() != "" {
		t.Errorf("exit 32: want bail only, got %+v", resp)
	}
	resp, err = client.Run(context.Background(), runRequest(t, root, nil, map[string]string{"test:exit": "7"}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetBail() || !strings.Contains(resp.GetError(), "exited with code 7") {
		t.Errorf("exit 7: want an error naming the code, got %+v", resp)
	}
}

func TestMissingSDKIsReported(t *testing.T) {
	client := serve(t)
	root := t.TempDir() // no node_modules anywhere above a fresh temp dir
	resp, err := client.Run(context.Background(), runRequest(t, root, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.GetError(), "npm install") {
		t.Errorf("want an error that says to run npm install, got %+v", resp)
	}
}

func TestBadOptionIsReported(t *testing.T) {
	client := serve(t)
	root := project(t)
	resp, err := client.Run(context.Background(), runRequest(t, root, map[string]any{"typescript": "yes"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.GetError(), "typescript must be true or false") {
		t.Errorf("want the option named, got %+v", resp)
	}
}

func TestPluginInfo(t *testing.T) {
	client := serve(t)
	info, err := client.GetPluginInfo(context.Background(), &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetVersion() != version || !strings.Contains(version, "dask-workspace") {
		t.Errorf("version %q must name this host", info.GetVersion())
	}
}
