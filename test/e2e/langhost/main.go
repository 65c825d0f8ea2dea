// Command pulumi-language-nodejs is a minimal Pulumi language host for Node.js programs, written
// for dask-workspace's end-to-end test (test/e2e) and nothing else.
//
// Why it exists: the e2e drives the real Pulumi CLI, and the CLI runs a Node.js program through a
// language-host plugin called pulumi-language-nodejs. Every official Pulumi install ships one next
// to the CLI, but our build machines reach only package registries, and none of them serves that
// plugin at a version that fits (the Go module proxy refuses the module). So test/e2e/tools.sh
// builds this one when no official host is installed. Where an official host is present (on every
// user's machine it is), tools.sh uses that instead.
//
// What it does: the LanguageRuntime gRPC service's Run and GetPluginInfo, a -version flag, and the
// engine-liveness check every plugin performs. Run starts
//
//	node <nodeargs...> <program's node_modules>/@pulumi/pulumi/cmd/run --monitor ... <entry point>
//
// with the stack config in PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS, exactly the contract the
// Node.js SDK's run script reads. Every other RPC answers Unimplemented, which the engine treats as
// "an older host" (GetRequiredPackages, Handshake) or reports plainly (InstallDependencies for
// `pulumi install`, GetProgramDependencies for `pulumi about`, code generation, packing). Nothing
// here is derived from the official host's source; the behaviour follows the SDK's run script and
// the engine's plugin protocol.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// version is what GetPluginInfo and -version report: the SDK release whose protocol this host
// speaks, marked as ours (semver build metadata) so every log says which host ran.
var version = "3.248.0+dask-workspace-e2e"

// bailExitCode is the exit code the Node.js SDK's run script uses after it has already shown the
// user an actionable error (nodeJSProcessExitedAfterLoggingUserActionableMessage): the engine must
// stop without reporting anything further.
const bailExitCode = 32

// runOptions are the Pulumi.yaml `runtime.options` this host honours.
type runOptions struct {
	typescript bool
	nodeargs   []string
	tsconfig   string
}

// parseOptions reads runtime.options from the program info. typescript defaults to true, as in
// every Pulumi Node.js project that does not set it.
func parseOptions(info *pulumirpc.ProgramInfo) (runOptions, error) {
	opts := runOptions{typescript: true}
	if info == nil || info.GetOptions() == nil {
		return opts, nil
	}
	for key, value := range info.GetOptions().AsMap() {
		switch key {
		case "typescript":
			b, ok := value.(bool)
			if !ok {
				return opts, fmt.Errorf("runtime option typescript must be true or false, got %v", value)
			}
			opts.typescript = b
		case "nodeargs":
			s, ok := value.(string)
			if !ok {
				return opts, fmt.Errorf("runtime option nodeargs must be a string, got %v", value)
			}
			opts.nodeargs = strings.Fields(s)
		case "tsconfig":
			s, ok := value.(string)
			if !ok {
				return opts, fmt.Errorf("runtime option tsconfig must be a string, got %v", value)
			}
			opts.tsconfig = s
		}
	}
	return opts, nil
}

// findRunScript looks for @pulumi/pulumi/cmd/run in node_modules folders from dir upwards, the
// way Node's own module resolution would find the SDK the program imports.
func findRunScript(dir string) (string, error) {
	start := dir
	for {
		candidate := filepath.Join(dir, "node_modules", "@pulumi", "pulumi", "cmd", "run")
		if st, err := os.Stat(candidate); err == nil && st.IsDir() {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no node_modules/@pulumi/pulumi/cmd/run above %s: run `npm install` in the project first", start)
		}
		dir = parent
	}
}

// nodeCommand builds the node arguments and the extra environment for one Run request.
func nodeCommand(req *pulumirpc.RunRequest, opts runOptions, runScript, engineAddress string) ([]string, []string, error) {
	args := append([]string{}, opts.nodeargs...)
	args = append(args, runScript)
	flagValues := [][2]string{
		{"monitor", req.GetMonitorAddress()},
		{"engine", engineAddress},
		{"project", req.GetProject()},
		{"stack", req.GetStack()},
		{"pwd", req.GetPwd()},
		{"organization", req.GetOrganization()},
		{"root-directory", req.GetInfo().GetRootDirectory()},
	}
	for _, fv := range flagValues {
		if fv[1] != "" {
			args = append(args, "--"+fv[0]+"="+fv[1])
		}
	}
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	if req.GetParallel() > 0 {
		args = append(args, "--parallel="+strconv.Itoa(int(req.GetParallel())))
	}
	program := req.GetInfo().GetEntryPoint()
	if program == "" {
		program = req.GetProgram()
	}
	if program == "" {
		program = "."
	}
	if program != "." && req.GetInfo().GetProgramDirectory() != "" && !filepath.IsAbs(program) {
		program = filepath.Join(req.GetInfo().GetProgramDirectory(), program)
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	config, err := configJSON(req.GetConfig())
	if err != nil {
		return nil, nil, err
	}
	secretKeys, err := jsonStrings(req.GetConfigSecretKeys())
	if err != nil {
		return nil, nil, err
	}
	env := []string{
		"PULUMI_CONFIG=" + config,
		"PULUMI_CONFIG_SECRET_KEYS=" + secretKeys,
		"PULUMI_NODEJS_TYPESCRIPT=" + strconv.FormatBool(opts.typescript),
	}
	if opts.tsconfig != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+opts.tsconfig)
	}
	return args, env, nil
}

// configJSON encodes the config map as the JSON object the SDK reads (encoding/json sorts keys).
func configJSON(config map[string]string) (string, error) {
	if config == nil {
		config = map[string]string{}
	}
	b, err := json.Marshal(config)
	return string(b), err
}

// jsonStrings encodes the secret keys as the JSON array the SDK reads.
func jsonStrings(values []string) (string, error) {
	if values == nil {
		values = []string{}
	}
	b, err := json.Marshal(values)
	return string(b), err
}

// runResponse maps the node process's end to the engine's answer: 0 is success, the SDK's bail
// code means "already reported", anything else is an error the engine shows.
func runResponse(err error) (*pulumirpc.RunResponse, error) {
	if err == nil {
		return &pulumirpc.RunResponse{}, nil
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code := exitErr.ExitCode()
		if code == bailExitCode {
			return &pulumirpc.RunResponse{Bail: true}, nil
		}
		if code < 0 {
			return &pulumirpc.RunResponse{Error: "the Node.js program was killed: " + exitErr.String()}, nil
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("the Node.js program exited with code %d", code)}, nil
	}
	return nil, status.Errorf(codes.Internal, "could not start node: %v", err)
}

// languageHost is the LanguageRuntime service.
type languageHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	node          string
}

func (h *languageHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (h *languageHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	opts, err := parseOptions(req.GetInfo())
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	searchFrom := req.GetInfo().GetProgramDirectory()
	if searchFrom == "" {
		searchFrom = req.GetPwd()
	}
	runScript, err := findRunScript(searchFrom)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	args, extraEnv, err := nodeCommand(req, opts, runScript, h.engineAddress)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	cmd := exec.CommandContext(ctx, h.node, args...)
	cmd.Dir = req.GetPwd()
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	return runResponse(cmd.Run())
}

// watchEngine ends the process when the engine stops answering, so the host never outlives it.
func watchEngine(engineAddress string, every time.Duration) {
	conn, err := grpc.NewClient(engineAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	client := healthpb.NewHealthClient(conn)
	for {
		time.Sleep(every)
		ctx, cancel := context.WithTimeout(context.Background(), every)
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil && status.Code(err) != codes.Unimplemented {
			fmt.Fprintf(os.Stderr, "pulumi-language-nodejs (dask-workspace e2e): the engine at %s is gone (%v); exiting\n", engineAddress, err)
			os.Exit(1)
		}
	}
}

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	// Flags the engine or older tooling may pass; accepted and ignored.
	_ = flag.String("tracing", "", "ignored: tracing endpoint")
	_ = flag.String("root", "", "ignored: project root")
	_ = flag.Bool("typescript", true, "ignored: read from the run request's options instead")
	_ = flag.String("binary", "", "ignored")
	flag.Parse()
	if *showVersion {
		fmt.Println("v" + version)
		return
	}
	if flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: pulumi-language-nodejs [-version] ENGINE_ADDRESS")
		os.Exit(2)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pulumi-language-nodejs: node is not on PATH")
		os.Exit(1)
	}
	engineAddress := flag.Arg(0)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pulumi-language-nodejs:", err)
		os.Exit(1)
	}
	server := grpc.NewServer(grpc.MaxRecvMsgSize(400 * 1024 * 1024))
	pulumirpc.RegisterLanguageRuntimeServer(server, &languageHost{engineAddress: engineAddress, node: node})
	// The engine reads the port from the first line of stdout.
	fmt.Println(lis.Addr().(*net.TCPAddr).Port)
	go watchEngine(engineAddress, 5*time.Second)
	if err := server.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "pulumi-language-nodejs:", err)
		os.Exit(1)
	}
}
