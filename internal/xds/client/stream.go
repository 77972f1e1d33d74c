package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// session is the state of one ADS stream.
type session struct {
	stream   grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	node     *corev3.Node
	sentNode bool
	nonces   map[string]string   // type URL → nonce of the last response received
	names    map[string][]string // EDS/RDS: names subscribed on this stream (absent: never sent)
}

// runStream opens one ADS stream and serves it until it fails or ctx ends.
// progressed reports whether a response was received.
func (c *Client) runStream(ctx context.Context, conn *grpc.ClientConn, h Handler, acc *accepted) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.opts.Token)

	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, fmt.Errorf("open ADS stream: %w", err)
	}
	s := &session{
		stream: stream,
		node:   &corev3.Node{Id: c.opts.NodeID, Cluster: c.opts.Cluster, UserAgentName: "trellis"},
		nonces: map[string]string{},
		names:  map[string][]string{},
	}
	// Wildcard subscriptions (empty names), with what we already have, so an
	// unchanged type need not be pushed again.
	for _, typeURL := range []string{resources.ClusterType, resources.ListenerType} {
		if err := s.send(typeURL, acc.versions[typeURL], "", nil, nil); err != nil {
			return false, err
		}
	}
	if err := s.followReferences(acc); err != nil {
		return false, err
	}
	// The server sends headers once it has accepted the stream's token.
	if md, err := stream.Header(); err != nil || md == nil {
		if err == nil {
			_, err = stream.Recv()
		}
		if err == nil {
			err = errors.New("no response headers")
		}
		return false, fmt.Errorf("ADS stream refused: %w", err)
	}
	c.setConnected(true, "")
	c.log.Info("xDS stream open")

	for {
		resp, err := stream.Recv()
		if err != nil {
			return progressed, fmt.Errorf("receive: %w", err)
		}
		progressed = true
		if err := c.handle(s, acc, h, resp); err != nil {
			return progressed, err
		}
	}
}

// handle applies one response: Update the handler with the merged set, then
// ACK or NACK, then follow new EDS/RDS references.
func (c *Client) handle(s *session, acc *accepted, h Handler, resp *discoveryv3.DiscoveryResponse) error {
	typeURL := resp.GetTypeUrl()
	switch typeURL {
	case resources.ListenerType, resources.RouteType, resources.ClusterType, resources.EndpointType:
	default:
		c.log.Warn("xDS response of an unexpected type ignored", "type", typeURL)
		return nil
	}
	s.nonces[typeURL] = resp.GetNonce()

	next, err := acc.candidate(resp)
	deliver := !acc.delivered
	if err == nil && !deliver {
		deliver, err = acc.changed(next)
	}
	if err == nil && deliver {
		if err = deliverTo(h, next); err == nil {
			acc.delivered = true
		}
	}
	if err != nil {
		c.log.Warn("xDS NACK", "type", typeURL, "version", resp.GetVersionInfo(), "err", err)
		c.setLastError(err.Error())
		detail := &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		return s.send(typeURL, acc.versions[typeURL], resp.GetNonce(), s.names[typeURL], detail)
	}
	acc.commit(next, resp.GetVersionInfo(), deliver)
	c.setAccepted(acc)
	c.log.Debug("xDS ACK", "type", typeURL, "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
	if err := s.send(typeURL, resp.GetVersionInfo(), resp.GetNonce(), s.names[typeURL], nil); err != nil {
		return err
	}
	return s.followReferences(acc)
}

// deliverTo decodes next and hands it to h.
func deliverTo(h Handler, next *candidate) error {
	set, err := next.set()
	if err != nil {
		return err
	}
	if eh, ok := h.(EncodedHandler); ok {
		return eh.UpdateEncoded(set, next.encodings())
	}
	return h.Update(set)
}

// followReferences subscribes to the EDS names of the accepted clusters and
// the RDS names of the accepted listeners, when they differ from what this
// stream asked for.
func (s *session) followReferences(acc *accepted) error {
	want := map[string][]string{
		resources.EndpointType: allRefs(acc.res[resources.ClusterType]),
		resources.RouteType:    allRefs(acc.res[resources.ListenerType]),
	}
	for _, typeURL := range []string{resources.EndpointType, resources.RouteType} {
		names, sent := s.names[typeURL]
		if (!sent && len(want[typeURL]) == 0) || (sent && slices.Equal(names, want[typeURL])) {
			continue
		}
		s.names[typeURL] = want[typeURL]
		if err := s.send(typeURL, acc.versions[typeURL], s.nonces[typeURL], want[typeURL], nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) send(typeURL, version, nonce string, names []string, detail *status.Status) error {
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   version,
		ResourceNames: names,
		TypeUrl:       typeURL,
		ResponseNonce: nonce,
		ErrorDetail:   detail,
	}
	if !s.sentNode {
		req.Node = s.node
		s.sentNode = true
	}
	if err := s.stream.Send(req); err != nil {
		if errors.Is(err, io.EOF) {
			// The stream is over; its status says why.
			if _, rerr := s.stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
				err = rerr
			}
		}
		return fmt.Errorf("send %s request: %w", typeURL, err)
	}
	return nil
}
