// Command go-host is a benchmark-only stand-in for the Plakar host: it spawns a storage plugin exactly as plakar v1.1.x
// does (argv[0] = the executable, fd 0 = read end of one pipe, fd 1 = write end of another, stderr inherited), wraps
// its own two pipe ends as one net.Conn and talks grpc-go to it (insecure, target "127.0.0.1:0", a dialer returning
// that conn, default window settings and the default 4 MiB receive limit), like integration-grpc's client
// (shared/PROTOCOL.md §1.2, §1.3). Messages are encoded by hand with protowire after proto/storage/storage.proto, so no
// generated stubs are needed.
//
// A job (JSON, on stdin or in the file named by -job) names the plugin, its Init config and a list of steps:
//
//	{"executable": "dist/s3/s3", "args": ["storage"], "proto": "s3", "config": {"location": "s3://…"},
//	 "steps": [{"op": "create", "config": "_KLOSET_bench"}, {"op": "open"},
//	           {"op": "replay", "gets": "gets.txt", "verify": {"<mac hex>": "packfile.bin"}},
//	           {"op": "put", "count": 4, "size": 268435456, "concurrency": 1}, {"op": "get", "concurrency": 1},
//	           {"op": "delete"}, {"op": "close"}]}
//
// `replay` issues the Gets of a file (one per line: mac hex, resource type, offset, length) one at a time like the
// real host (PROTOCOL.md §9), reading each reply to the end; with `verify`, each reply is compared with the bytes of a
// local copy of the packfile (loaded before the clock starts; the comparison is outside the timed Gets). `put` writes
// `count` objects of `size` synthetic bytes, `concurrency` at a time, each as a client stream of mac+type then ≤ 1 MiB
// chunks (§3.6.1), object i of `sizes[i % len(sizes)]` bytes when `sizes` is given; `get` reads back whole every object
// of the last `put` (checking each one's length), `delete` removes them.
//
// It prints one JSON line on stdout: Init's answer and, per step, seconds, counts, bytes, the plugin's CPU (from
// /proc/<pid>/stat, 10 ms ticks) and this process's own CPU (getrusage). Exit 0 on success, 1 on any failure (the
// line then carries "error").
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	mib = 1 << 20
	// The host never sends more than 1 MiB of payload per Put message (PROTOCOL.md §3.6.1).
	putChunk = mib
	// Linux USER_HZ: /proc/<pid>/stat counts CPU time in 10 ms ticks.
	tickSeconds = 0.01
	// Resource type of packfiles (StorageResource, PROTOCOL.md §3.6.2).
	resourcePackfile = 1
)

// Job is what to run: the plugin, its Init and the steps.
type Job struct {
	Executable string            `json:"executable"`
	Args       []string          `json:"args"`
	Proto      string            `json:"proto"`
	Config     map[string]string `json:"config"`
	Steps      []Step            `json:"steps"`
}

// Step is one operation of a job.
type Step struct {
	Op          string            `json:"op"`
	Name        string            `json:"name,omitempty"`
	Config      string            `json:"config,omitempty"`
	Gets        string            `json:"gets,omitempty"`
	Verify      map[string]string `json:"verify,omitempty"`
	Count       int               `json:"count,omitempty"`
	Size        int64             `json:"size,omitempty"`
	Sizes       []int64           `json:"sizes,omitempty"`
	Concurrency int               `json:"concurrency,omitempty"`
}

// StepResult is what one step measured.
type StepResult struct {
	Op      string  `json:"op"`
	Name    string  `json:"name,omitempty"`
	Seconds float64 `json:"seconds"`
	Calls   int     `json:"calls"`
	Bytes   int64   `json:"bytes"`
	// CPU seconds the plugin process used during the step.
	PluginCPU float64 `json:"pluginCpu"`
	// CPU seconds this host used during the step (verification included for replay).
	HostCPU  float64 `json:"hostCpu"`
	Verified int     `json:"verified,omitempty"`
	// Per-Get wall time quantiles in milliseconds (replay only).
	Latency *Quantiles `json:"latencyMs,omitempty"`
}

// Quantiles of per-call times.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func quantiles(ds []time.Duration) *Quantiles {
	if len(ds) == 0 {
		return nil
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(p float64) float64 {
		i := int(p * float64(len(ds)))
		if i >= len(ds) {
			i = len(ds) - 1
		}
		return float64(ds[i]) / 1e6
	}
	return &Quantiles{P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: at(1)}
}

// Output is the one JSON line printed on stdout.
type Output struct {
	OK     bool         `json:"ok"`
	Error  string       `json:"error,omitempty"`
	Host   string       `json:"host"`
	Init   *InitResult  `json:"init,omitempty"`
	Steps  []StepResult `json:"steps"`
	Plugin struct {
		Pid          int   `json:"pid"`
		PeakRssBytes int64 `json:"peakRssBytes"`
		ExitCode     int   `json:"exitCode"`
	} `json:"plugin"`
}

// InitResult is store.InitResponse.
type InitResult struct {
	Origin string `json:"origin"`
	Type   string `json:"type"`
	Root   string `json:"root"`
	Flags  uint64 `json:"flags"`
}

func main() {
	jobPath := flag.String("job", "", "read the job from this file instead of stdin")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this host to the file (go tool pprof)")
	flag.Parse()
	if *cpuProfile != "" {
		if f, err := os.Create(*cpuProfile); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	out := Output{Host: "grpc-go " + grpc.Version, Steps: []StepResult{}}
	err := run(*jobPath, &out)
	if err != nil {
		out.Error = err.Error()
		fmt.Fprintf(os.Stderr, "go-host: %v\n", err)
	}
	out.OK = err == nil
	line, _ := json.Marshal(out)
	os.Stdout.Write(append(line, '\n'))
	if err != nil {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(jobPath string, out *Output) error {
	var raw []byte
	var err error
	if jobPath != "" {
		raw, err = os.ReadFile(jobPath)
	} else {
		raw, err = io.ReadAll(os.Stdin)
	}
	if err != nil {
		return fmt.Errorf("reading the job: %w", err)
	}
	var job Job
	if err := json.Unmarshal(raw, &job); err != nil {
		return fmt.Errorf("the job is not valid JSON: %w", err)
	}
	if job.Executable == "" {
		return errors.New("the job names no executable")
	}

	plugin, err := spawn(job.Executable, job.Args)
	if err != nil {
		return err
	}
	out.Plugin.Pid = plugin.cmd.Process.Pid
	defer func() {
		out.Plugin.ExitCode = plugin.close()
	}()

	cc, err := grpc.DialContext(context.Background(), "127.0.0.1:0",
		grpc.WithInsecure(),
		grpc.WithContextDialer(plugin.dial),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
	)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	plugin.cc = cc
	s := &store{cc: cc}

	init, err := s.init(job.Proto, job.Config)
	if err != nil {
		return fmt.Errorf("Init: %w", err)
	}
	out.Init = init

	var objects []object
	for i, step := range job.Steps {
		// A replay's Gets and local copies are loaded before the CPU counters are read.
		var work *replayWork
		if step.Op == "replay" {
			if work, err = loadReplay(step); err != nil {
				return fmt.Errorf("step %d (replay): %w", i+1, err)
			}
		}
		pid := plugin.cmd.Process.Pid
		ticks0, err := cpuTicks(pid)
		if err != nil {
			return err
		}
		host0 := hostCPU()
		res := StepResult{Op: step.Op, Name: step.Name}
		switch step.Op {
		case "create":
			t0 := time.Now()
			err = s.unary("Create", protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte(step.Config)), nil)
			res.Seconds, res.Calls = time.Since(t0).Seconds(), 1
		case "open":
			t0 := time.Now()
			err = s.unary("Open", nil, nil)
			res.Seconds, res.Calls = time.Since(t0).Seconds(), 1
		case "close":
			t0 := time.Now()
			err = s.unary("Close", nil, nil)
			res.Seconds, res.Calls = time.Since(t0).Seconds(), 1
		case "replay":
			err = s.replay(work, &res)
		case "put":
			objects, err = s.putMany(step, &res)
		case "get":
			err = s.getMany(step, objects, &res)
		case "delete":
			err = s.deleteMany(objects, &res)
			objects = nil
		default:
			err = fmt.Errorf("unknown op %q", step.Op)
		}
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, step.Op, err)
		}
		ticks1, err := cpuTicks(pid)
		if err != nil {
			return err
		}
		res.PluginCPU = float64(ticks1-ticks0) * tickSeconds
		res.HostCPU = hostCPU() - host0
		out.Steps = append(out.Steps, res)
	}
	out.Plugin.PeakRssBytes = peakRss(plugin.cmd.Process.Pid)
	return nil
}

// --- The plugin process and its pipes ---

type pluginProc struct {
	cmd    *exec.Cmd
	conn   *pipeConn
	dialed bool
	mu     sync.Mutex
	cc     *grpc.ClientConn
}

// spawn starts the executable like plakar's plugins/connect.go: exec with stdin and stdout set to pipe ends.
func spawn(executable string, args []string) (*pluginProc, error) {
	// Host → plugin: the plugin reads toPluginR as fd 0; the host writes toPluginW.
	toPluginR, toPluginW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// Plugin → host: the plugin writes fromPluginW as fd 1; the host reads fromPluginR.
	fromPluginR, fromPluginW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(executable, args...)
	cmd.Stdin = toPluginR
	cmd.Stdout = fromPluginW
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", executable, err)
	}
	// The child holds its own copies of these two ends.
	toPluginR.Close()
	fromPluginW.Close()
	return &pluginProc{cmd: cmd, conn: &pipeConn{r: fromPluginR, w: toPluginW}}, nil
}

// dial hands the pipes to grpc-go once; like the real host there is nothing to re-dial.
func (p *pluginProc) dial(ctx context.Context, addr string) (net.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dialed {
		return nil, errors.New("the plugin's pipes were already used by a connection that ended")
	}
	p.dialed = true
	return p.conn, nil
}

// close ends the instance like Plakar exiting: the connection and both pipes close (EOF), then it waits for the exit.
func (p *pluginProc) close() int {
	if p.cc != nil {
		p.cc.Close()
	}
	p.conn.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "go-host: the plugin did not exit 10 s after EOF on its stdin; killing it\n")
		p.cmd.Process.Kill()
		<-done
	}
	return p.cmd.ProcessState.ExitCode()
}

// pipeConn is the host's two pipe ends as one net.Conn: reads from the plugin's stdout, writes to its stdin.
type pipeConn struct {
	r, w *os.File
	once sync.Once
}

func (c *pipeConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *pipeConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *pipeConn) Close() error {
	c.once.Do(func() {
		c.w.Close()
		c.r.Close()
	})
	return nil
}
func (c *pipeConn) LocalAddr() net.Addr  { return pipeAddr{} }
func (c *pipeConn) RemoteAddr() net.Addr { return pipeAddr{} }
func (c *pipeConn) SetDeadline(t time.Time) error {
	c.r.SetReadDeadline(t)
	c.w.SetWriteDeadline(t)
	return nil
}
func (c *pipeConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// rawCodec passes encoded messages through: requests are []byte, replies land in *[]byte.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	switch m := v.(type) {
	case []byte:
		return m, nil
	case *[]byte:
		return *m, nil
	}
	return nil, fmt.Errorf("rawCodec cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	m, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec cannot unmarshal into %T", v)
	}
	// grpc-go 1.33 allocates a fresh buffer per received message, so it can be kept as is.
	*m = data
	return nil
}

func (rawCodec) Name() string { return "proto" }

// --- store.Store calls ---

type store struct {
	cc *grpc.ClientConn
}

var (
	serverStream = &grpc.StreamDesc{ServerStreams: true}
	clientStream = &grpc.StreamDesc{ClientStreams: true}
)

func method(name string) string { return "/store.Store/" + name }

func (s *store) unary(name string, req []byte, reply *[]byte) error {
	if reply == nil {
		reply = new([]byte)
	}
	if req == nil {
		req = []byte{}
	}
	if err := s.cc.Invoke(context.Background(), method(name), req, reply); err != nil {
		return describe(err)
	}
	return nil
}

func describe(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}

func (s *store) init(proto string, config map[string]string) (*InitResult, error) {
	req := protowire.AppendTag(nil, 1, protowire.BytesType)
	req = protowire.AppendString(req, proto)
	for k, v := range config {
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, k)
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendString(entry, v)
		req = protowire.AppendTag(req, 2, protowire.BytesType)
		req = protowire.AppendBytes(req, entry)
	}
	var reply []byte
	if err := s.unary("Init", req, &reply); err != nil {
		return nil, err
	}
	res := &InitResult{}
	err := eachField(reply, func(num protowire.Number, typ protowire.Type, b []byte, v uint64) {
		switch {
		case num == 1 && typ == protowire.BytesType:
			res.Origin = string(b)
		case num == 2 && typ == protowire.BytesType:
			res.Type = string(b)
		case num == 3 && typ == protowire.BytesType:
			res.Root = string(b)
		case num == 5 && typ == protowire.VarintType:
			res.Flags = v
		}
	})
	return res, err
}

// eachField walks the top-level fields of a message; b is set for length-delimited fields, v for varints.
func eachField(msg []byte, fn func(num protowire.Number, typ protowire.Type, b []byte, v uint64)) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		switch typ {
		case protowire.BytesType:
			b, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			fn(num, typ, b, 0)
			msg = msg[m:]
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			fn(num, typ, nil, v)
			msg = msg[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			msg = msg[m:]
		}
	}
	return nil
}

func getRequest(mac []byte, typ uint64, offset uint64, length uint32, ranged bool) []byte {
	req := protowire.AppendTag(nil, 1, protowire.BytesType)
	req = protowire.AppendBytes(req, mac)
	req = protowire.AppendTag(req, 2, protowire.VarintType)
	req = protowire.AppendVarint(req, typ)
	if ranged {
		var r []byte
		if offset != 0 {
			r = protowire.AppendTag(r, 1, protowire.VarintType)
			r = protowire.AppendVarint(r, offset)
		}
		if length != 0 {
			r = protowire.AppendTag(r, 2, protowire.VarintType)
			r = protowire.AppendVarint(r, uint64(length))
		}
		req = protowire.AppendTag(req, 3, protowire.BytesType)
		req = protowire.AppendBytes(req, r)
	}
	return req
}

// get runs one Get and appends the object's bytes (the chunks, in order) to dst, reading the stream to its end.
func (s *store) get(req []byte, dst []byte) ([]byte, error) {
	err := s.getChunks(req, func(chunk []byte) { dst = append(dst, chunk...) })
	return dst, err
}

// getChunks runs one Get and hands each chunk to fn, reading the stream to its end.
func (s *store) getChunks(req []byte, fn func(chunk []byte)) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := s.cc.NewStream(ctx, serverStream, method("Get"))
	if err != nil {
		return describe(err)
	}
	if err := stream.SendMsg(req); err != nil {
		return describe(err)
	}
	if err := stream.CloseSend(); err != nil {
		return describe(err)
	}
	for {
		var msg []byte
		if err := stream.RecvMsg(&msg); err != nil {
			if err == io.EOF {
				return nil
			}
			return describe(err)
		}
		err := eachField(msg, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) {
			if num == 1 && typ == protowire.BytesType {
				fn(b)
			}
		})
		if err != nil {
			return err
		}
	}
}

type ranged struct {
	mac            []byte
	typ            uint64
	offset, length uint64
}

func readGets(path string) ([]ranged, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var gets []ranged
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 4 {
			return nil, fmt.Errorf("%s:%d: expected `mac type offset length`", path, line)
		}
		mac, err := hex.DecodeString(fields[0])
		if err != nil || len(mac) != 32 {
			return nil, fmt.Errorf("%s:%d: the MAC must be 64 hex digits", path, line)
		}
		var nums [3]uint64
		for i := range nums {
			if nums[i], err = strconv.ParseUint(fields[i+1], 10, 64); err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, line, err)
			}
		}
		gets = append(gets, ranged{mac: mac, typ: nums[0], offset: nums[1], length: nums[2]})
	}
	return gets, sc.Err()
}

// replayWork is a replay step loaded: its Gets and the local copies to compare with, by mac hex.
type replayWork struct {
	gets    []ranged
	sources map[string][]byte
}

func loadReplay(step Step) (*replayWork, error) {
	gets, err := readGets(step.Gets)
	if err != nil {
		return nil, err
	}
	sources := map[string][]byte{}
	for macHex, path := range step.Verify {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		sources[strings.ToLower(macHex)] = data
	}
	return &replayWork{gets: gets, sources: sources}, nil
}

// replay issues the Gets one at a time; seconds is the sum of the Gets' own times (verification excluded).
func (s *store) replay(work *replayWork, res *StepResult) error {
	gets, sources := work.gets, work.sources
	// Like kloset, the host reads each range into a buffer of the requested length (io.ReadFull); one reused buffer.
	buf := make([]byte, 0, 6*mib)
	var elapsed time.Duration
	times := make([]time.Duration, 0, len(gets))
	for _, g := range gets {
		req := getRequest(g.mac, g.typ, g.offset, uint32(g.length), true)
		t0 := time.Now()
		got, err := s.get(req, buf[:0])
		took := time.Since(t0)
		elapsed += took
		times = append(times, took)
		if err != nil {
			return fmt.Errorf("Get %x %d+%d: %w", g.mac[:4], g.offset, g.length, err)
		}
		if uint64(len(got)) < g.length {
			// kloset fails when fewer bytes than asked arrive, unless the range runs past the end of the object.
			if src, ok := sources[hex.EncodeToString(g.mac)]; !ok || g.offset+uint64(len(got)) != uint64(len(src)) {
				return fmt.Errorf("Get %x %d+%d returned only %d bytes", g.mac[:4], g.offset, g.length, len(got))
			}
		}
		if uint64(len(got)) > g.length {
			got = got[:g.length]
		}
		if src, ok := sources[hex.EncodeToString(g.mac)]; ok {
			end := g.offset + uint64(len(got))
			if end > uint64(len(src)) || !bytes.Equal(got, src[g.offset:end]) {
				return fmt.Errorf("Get %x %d+%d returned different bytes than the local copy", g.mac[:4], g.offset, g.length)
			}
			res.Verified++
		}
		res.Calls++
		res.Bytes += int64(len(got))
		buf = got
	}
	res.Seconds = elapsed.Seconds()
	res.Latency = quantiles(times)
	return nil
}

// synthetic is the content of put objects: a fixed random block with a counter per MiB (cheap, incompressible).
type synthetic struct{ block []byte }

func newSynthetic() *synthetic {
	b := make([]byte, mib)
	rand.New(rand.NewSource(1)).Read(b)
	return &synthetic{block: b}
}

func (s *store) put(mac []byte, size int64, src *synthetic) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := s.cc.NewStream(ctx, clientStream, method("Put"))
	if err != nil {
		return describe(err)
	}
	// First message: mac + type, no chunk (PROTOCOL.md §9).
	first := protowire.AppendTag(nil, 1, protowire.BytesType)
	first = protowire.AppendBytes(first, mac)
	first = protowire.AppendTag(first, 2, protowire.VarintType)
	first = protowire.AppendVarint(first, resourcePackfile)
	if err := stream.SendMsg(first); err != nil {
		return fmt.Errorf("failed to send the header: %w", describe(err))
	}
	for sent, n := int64(0), uint32(0); sent < size; n++ {
		length := int64(putChunk)
		if size-sent < length {
			length = size - sent
		}
		// One buffer per message, like a protobuf marshal: grpc-go may still hold it after SendMsg returns.
		msg := protowire.AppendTag(make([]byte, 0, length+8), 3, protowire.BytesType)
		msg = protowire.AppendBytes(msg, src.block[:length])
		if length >= 4 {
			chunk := msg[len(msg)-int(length):]
			chunk[0], chunk[1], chunk[2], chunk[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
		}
		if err := stream.SendMsg(msg); err != nil {
			return fmt.Errorf("failed to send chunk: %w", describe(err))
		}
		sent += length
	}
	if err := stream.CloseSend(); err != nil {
		return describe(err)
	}
	var reply []byte
	if err := stream.RecvMsg(&reply); err != nil {
		return describe(err)
	}
	var written uint64
	if err := eachField(reply, func(num protowire.Number, typ protowire.Type, _ []byte, v uint64) {
		if num == 1 && typ == protowire.VarintType {
			written = v
		}
	}); err != nil {
		return err
	}
	if int64(written) != size {
		return fmt.Errorf("Put answered bytes_written %d for %d bytes", written, size)
	}
	return nil
}

// parallel runs fn(i) for i in [0, n) with at most c at once and returns the first error.
func parallel(n, c int, fn func(i int) error) error {
	if c < 1 {
		c = 1
	}
	next := make(chan int)
	errs := make(chan error, c)
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
					for range next {
					}
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// object is one object written by a put step.
type object struct {
	mac  []byte
	size int64
}

func (s *store) putMany(step Step, res *StepResult) ([]object, error) {
	src := newSynthetic()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	objects := make([]object, step.Count)
	for i := range objects {
		objects[i].mac = make([]byte, 32)
		rng.Read(objects[i].mac)
		objects[i].size = step.Size
		if len(step.Sizes) > 0 {
			objects[i].size = step.Sizes[i%len(step.Sizes)]
		}
		res.Bytes += objects[i].size
	}
	t0 := time.Now()
	err := parallel(step.Count, step.Concurrency, func(i int) error { return s.put(objects[i].mac, objects[i].size, src) })
	res.Seconds = time.Since(t0).Seconds()
	res.Calls = step.Count
	return objects, err
}

func (s *store) getMany(step Step, objects []object, res *StepResult) error {
	if len(objects) == 0 {
		return errors.New("no objects to get: run a put step first")
	}
	c := step.Concurrency
	if c < 1 {
		c = 1
	}
	var mu sync.Mutex
	t0 := time.Now()
	err := parallel(len(objects), c, func(i int) error {
		// Whole objects are consumed as they stream in (a restore writes them out), not kept.
		var n int64
		if err := s.getChunks(getRequest(objects[i].mac, resourcePackfile, 0, 0, false), func(chunk []byte) { n += int64(len(chunk)) }); err != nil {
			return err
		}
		if n != objects[i].size {
			return fmt.Errorf("Get of a %d-byte object returned %d bytes", objects[i].size, n)
		}
		mu.Lock()
		res.Bytes += n
		mu.Unlock()
		return nil
	})
	res.Seconds = time.Since(t0).Seconds()
	res.Calls = len(objects)
	return err
}

func (s *store) deleteMany(objects []object, res *StepResult) error {
	t0 := time.Now()
	for _, o := range objects {
		req := protowire.AppendTag(nil, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, o.mac)
		req = protowire.AppendTag(req, 2, protowire.VarintType)
		req = protowire.AppendVarint(req, resourcePackfile)
		if err := s.unary("Delete", req, nil); err != nil {
			return err
		}
		res.Calls++
	}
	res.Seconds = time.Since(t0).Seconds()
	return nil
}

// --- CPU and memory ---

func cpuTicks(pid int) (int64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return utime + stime, nil
}

func hostCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func peakRss(pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(line[len("VmHWM:"):]), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
